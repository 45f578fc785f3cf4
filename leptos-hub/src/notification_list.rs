//! The notification list as data: newest first, deduplicated by id, capped, with unread
//! marks. Kept apart from the components so that its rules are plain Rust.
//!
//! Ids are opaque: the list compares them for equality only. Order is the publish time
//! (`created_at`, the server's clock): history comes oldest first and live notifications
//! mostly newer, but a list over several streams also gets older ones, replayed for a
//! stream it just added, which take their place by time rather than the top.

use common::Notification;

/// One notification in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedNotification {
    pub notification: Notification,
    pub unread: bool,
}

/// The list shown by the notification panel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationList {
    /// Newest first.
    items: Vec<ListedNotification>,
    cap: usize,
    /// While history is reloaded (after a reset or a change of streams): what arrived live
    /// meanwhile; it stays listed when the reloaded history does not have it yet.
    arrived_while_reloading: Option<Vec<ListedNotification>>,
}

impl NotificationList {
    /// An empty feed that keeps at most `cap` notifications.
    pub fn new(cap: usize) -> Self {
        Self {
            items: Vec::new(),
            cap,
            arrived_while_reloading: None,
        }
    }

    /// Newest first.
    pub fn items(&self) -> &[ListedNotification] {
        &self.items
    }

    pub fn unread(&self) -> usize {
        self.items.iter().filter(|item| item.unread).count()
    }

    fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|item| item.notification.id == id)
    }

    /// Merges stored history (oldest first). Entries after the read mark `read_through`
    /// (the newest notification the user marked read) are unread; if the mark is not among
    /// them (pruned since, from another server, or garbage), all are newer than it, so all
    /// are unread; with no mark (a first visit) all count as read.
    pub fn load_history(&mut self, history: Vec<Notification>, read_through: Option<&str>) {
        let first_unread = match read_through {
            None => history.len(),
            Some(id) => history
                .iter()
                .position(|n| n.id == id)
                .map_or(0, |seen| seen + 1),
        };
        let mut older: Vec<ListedNotification> = history
            .into_iter()
            .enumerate()
            .filter(|(_, n)| !self.contains(&n.id))
            .map(|(index, notification)| ListedNotification {
                notification,
                unread: index >= first_unread,
            })
            .collect();
        older.reverse();
        self.items.extend(older);
        self.items.truncate(self.cap);
    }

    /// Starts a reload (after a reset): what arrives live until [`NotificationList::reload`] is kept.
    pub fn begin_reload(&mut self) {
        self.arrived_while_reloading.get_or_insert_with(Vec::new);
    }

    /// Replaces the list with freshly loaded history (oldest first), as after a reset.
    /// Entries listed before keep their unread mark; the others are unread. What arrived
    /// live since [`NotificationList::begin_reload`] and is not in `history` (it is newer) stays on top.
    pub fn reload(&mut self, history: Vec<Notification>) {
        let arrived = self.arrived_while_reloading.take().unwrap_or_default();
        let mut newer: Vec<ListedNotification> = (arrived.into_iter().rev())
            .filter(|item| !history.iter().any(|n| n.id == item.notification.id))
            .collect();
        let was_read = |id: &str| {
            self.items
                .iter()
                .any(|item| item.notification.id == id && !item.unread)
        };
        let mut items: Vec<ListedNotification> = history
            .into_iter()
            .map(|notification| ListedNotification {
                unread: !was_read(&notification.id),
                notification,
            })
            .collect();
        items.reverse();
        newer.extend(items);
        // Stable: what was published at the same time keeps the order above.
        newer.sort_by(|a, b| b.notification.created_at.cmp(&a.notification.created_at));
        newer.truncate(self.cap);
        self.items = newer;
    }

    /// Keeps only the notifications `keep` accepts (those of a set's remaining streams).
    pub fn retain(&mut self, keep: impl Fn(&Notification) -> bool) {
        self.items.retain(|item| keep(&item.notification));
        if let Some(arrived) = &mut self.arrived_while_reloading {
            arrived.retain(|item| keep(&item.notification));
        }
    }

    /// Adds a notification that just arrived, in its place by time (newest first, and on
    /// top of those published at the same time); returns false for one already listed.
    pub fn push(&mut self, notification: Notification) -> bool {
        if self.contains(&notification.id) {
            return false;
        }
        let at = (self.items.iter())
            .position(|item| item.notification.created_at <= notification.created_at)
            .unwrap_or(self.items.len());
        let item = ListedNotification {
            notification,
            unread: true,
        };
        if let Some(arrived) = &mut self.arrived_while_reloading {
            arrived.push(item.clone());
        }
        self.items.insert(at, item);
        self.items.truncate(self.cap);
        true
    }

    /// The id of the newest listed notification: the read mark once all are read.
    pub fn newest(&self) -> Option<&str> {
        self.items.first().map(|item| item.notification.id.as_str())
    }

    pub fn mark_all_read(&mut self) {
        for item in &mut self.items {
            item.unread = false;
        }
    }

    /// Marks `id` and everything older read (another tab marked them). An id not listed
    /// changes nothing: this tab cannot tell where it lies.
    pub fn mark_read_through(&mut self, id: &str) {
        if let Some(at) = self
            .items
            .iter()
            .position(|item| item.notification.id == id)
        {
            for item in &mut self.items[at..] {
                item.unread = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::{wasm_bindgen_test as test, wasm_bindgen_test_configure};

    wasm_bindgen_test_configure!(run_in_browser);

    fn n(id: &str) -> Notification {
        at(id, "2026-01-01T00:00:00.000000000Z")
    }

    fn at(id: &str, created_at: &str) -> Notification {
        Notification {
            id: id.into(),
            stream: "messages".into(),
            title: format!("t{id}"),
            body: String::new(),
            level: common::Level::Info,
            created_at: created_at.into(),
        }
    }

    fn ids(feed: &NotificationList) -> Vec<(&str, bool)> {
        feed.items()
            .iter()
            .map(|i| (i.notification.id.as_str(), i.unread))
            .collect()
    }

    #[test]
    fn history_then_live_newest_first_without_duplicates() {
        let mut feed = NotificationList::new(3);
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
        let mut feed = NotificationList::new(10);
        feed.load_history(vec![n("a"), n("b")], None);
        feed.push(n("x"));
        feed.reload(vec![n("b"), n("c"), n("d")]);
        assert_eq!(ids(&feed), [("d", true), ("c", true), ("b", false)]);
    }

    #[test]
    fn what_arrives_live_while_history_reloads_is_kept() {
        let mut feed = NotificationList::new(10);
        feed.load_history(vec![n("a"), n("b")], None);
        feed.begin_reload();
        feed.push(n("d"));
        feed.push(n("e"));
        // The reloaded history has d (published before it was read), not e.
        feed.reload(vec![n("c"), n("d")]);
        assert_eq!(ids(&feed), [("e", true), ("d", true), ("c", true)]);
        feed.push(n("f"));
        feed.reload(vec![n("g")]);
        assert_eq!(
            ids(&feed),
            [("g", true)],
            "no reload under way: nothing kept"
        );
    }

    #[test]
    fn older_notifications_of_a_stream_just_added_take_their_place_by_time() {
        let mut feed = NotificationList::new(3);
        feed.load_history(
            vec![
                at("a", "2026-01-01T00:00:01.000000000Z"),
                at("c", "2026-01-01T00:00:03.000000000Z"),
            ],
            None,
        );
        assert!(feed.push(at("b", "2026-01-01T00:00:02.000000000Z")));
        assert!(feed.push(at("d", "2026-01-01T00:00:04.000000000Z")));
        assert_eq!(feed.newest(), Some("d"));
        assert!(feed.push(at("z", "2025-12-31T00:00:00.000000000Z")));
        let order: Vec<&str> = ids(&feed).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            order,
            ["d", "c", "b"],
            "by time, the oldest beyond the cap dropped"
        );
        feed.begin_reload();
        feed.push(at("e", "2026-01-01T00:00:05.000000000Z"));
        feed.push(at("y", "2026-01-01T00:00:00.500000000Z"));
        feed.retain(|n| n.id != "c");
        feed.reload(vec![at("b", "2026-01-01T00:00:02.000000000Z")]);
        let order: Vec<&str> = ids(&feed).into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, ["e", "b", "y"]);
    }

    #[test]
    fn another_tabs_read_mark_marks_that_one_and_older() {
        let mut feed = NotificationList::new(10);
        feed.load_history(vec![n("a"), n("b"), n("c")], Some("zzz"));
        feed.mark_read_through("b");
        assert_eq!(ids(&feed), [("c", true), ("b", false), ("a", false)]);
        feed.mark_read_through("unknown");
        assert_eq!(feed.unread(), 1);
        assert_eq!(feed.newest(), Some("c"));
    }

    #[test]
    fn unread_marks_depend_on_what_this_browser_saw() {
        let mut first_visit = NotificationList::new(10);
        first_visit.load_history(vec![n("a"), n("b")], None);
        assert_eq!(first_visit.unread(), 0);
        let mut long_gone = NotificationList::new(10);
        long_gone.load_history(vec![n("a"), n("b")], Some("zzz"));
        assert_eq!(long_gone.unread(), 2);
    }
}
