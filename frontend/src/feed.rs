//! The notification list as data: newest first, deduplicated by id, capped, with unread
//! marks. Kept apart from the components so that its rules are plain Rust.
//!
//! Ids are opaque: the feed compares them for equality only and takes order from the
//! server. That order holds because the panel loads history first (oldest first) and then
//! follows the stream from the newest history entry, so everything pushed afterwards is
//! newer than everything listed.

use common::Notification;

/// One notification in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    pub notification: Notification,
    pub unread: bool,
}

/// The list shown by the notification panel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Feed {
    /// Newest first.
    items: Vec<FeedItem>,
    cap: usize,
}

impl Feed {
    /// An empty feed that keeps at most `cap` notifications.
    pub fn new(cap: usize) -> Self {
        Self {
            items: Vec::new(),
            cap,
        }
    }

    /// Newest first.
    pub fn items(&self) -> &[FeedItem] {
        &self.items
    }

    pub fn unread(&self) -> usize {
        self.items.iter().filter(|item| item.unread).count()
    }

    fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|item| item.notification.id == id)
    }

    /// Merges stored history (oldest first). Entries after `last_seen` are unread; if
    /// `last_seen` is not among them, all are newer than what this browser saw, so all are
    /// unread; with no `last_seen` (a first visit) all count as read.
    pub fn load_history(&mut self, history: Vec<Notification>, last_seen: Option<&str>) {
        let first_unread = match last_seen {
            None => history.len(),
            Some(id) => history
                .iter()
                .position(|n| n.id == id)
                .map_or(0, |seen| seen + 1),
        };
        let mut older: Vec<FeedItem> = history
            .into_iter()
            .enumerate()
            .filter(|(_, n)| !self.contains(&n.id))
            .map(|(index, notification)| FeedItem {
                notification,
                unread: index >= first_unread,
            })
            .collect();
        older.reverse();
        self.items.extend(older);
        self.items.truncate(self.cap);
    }

    /// Replaces the list with freshly loaded history (oldest first), as after a reset.
    /// Entries listed before keep their unread mark; the others are unread.
    pub fn reload(&mut self, history: Vec<Notification>) {
        let was_read = |id: &str| {
            self.items
                .iter()
                .any(|item| item.notification.id == id && !item.unread)
        };
        let mut items: Vec<FeedItem> = history
            .into_iter()
            .map(|notification| FeedItem {
                unread: !was_read(&notification.id),
                notification,
            })
            .collect();
        items.reverse();
        items.truncate(self.cap);
        self.items = items;
    }

    /// Adds a notification that just arrived; returns false for one already listed.
    pub fn push(&mut self, notification: Notification) -> bool {
        if self.contains(&notification.id) {
            return false;
        }
        self.items.insert(
            0,
            FeedItem {
                notification,
                unread: true,
            },
        );
        self.items.truncate(self.cap);
        true
    }

    pub fn mark_all_read(&mut self) {
        for item in &mut self.items {
            item.unread = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::{wasm_bindgen_test as test, wasm_bindgen_test_configure};

    wasm_bindgen_test_configure!(run_in_browser);

    fn n(id: &str) -> Notification {
        Notification {
            id: id.into(),
            stream: "messages".into(),
            title: format!("t{id}"),
            body: String::new(),
            level: common::Level::Info,
            created_at: "2026-01-01T00:00:00.000000000Z".into(),
        }
    }

    fn ids(feed: &Feed) -> Vec<(&str, bool)> {
        feed.items()
            .iter()
            .map(|i| (i.notification.id.as_str(), i.unread))
            .collect()
    }

    #[test]
    fn history_then_live_newest_first_without_duplicates() {
        let mut feed = Feed::new(3);
        feed.load_history(vec![n("a"), n("b"), n("c")], Some("a"));
        assert_eq!(ids(&feed), [("c", true), ("b", true), ("a", false)]);
        assert!(
            !feed.push(n("c")),
            "replayed after history: not listed twice"
        );
        assert!(feed.push(n("d")));
        assert_eq!(
            ids(&feed),
            [("d", true), ("c", true), ("b", true)],
            "capped"
        );
        assert_eq!(feed.unread(), 3);
        feed.mark_all_read();
        assert_eq!(feed.unread(), 0);
    }

    #[test]
    fn a_reload_takes_the_servers_order_and_keeps_read_marks() {
        let mut feed = Feed::new(10);
        feed.load_history(vec![n("a"), n("b")], None);
        feed.push(n("x"));
        feed.reload(vec![n("b"), n("c"), n("d")]);
        assert_eq!(ids(&feed), [("d", true), ("c", true), ("b", false)]);
    }

    #[test]
    fn unread_marks_depend_on_what_this_browser_saw() {
        let mut first_visit = Feed::new(10);
        first_visit.load_history(vec![n("a"), n("b")], None);
        assert_eq!(first_visit.unread(), 0);
        let mut long_gone = Feed::new(10);
        long_gone.load_history(vec![n("a"), n("b")], Some("zzz"));
        assert_eq!(long_gone.unread(), 2);
    }
}
