//! Small values remembered across page loads (`localStorage`), or for the tab's lifetime
//! only (`sessionStorage`: the user's token).
//!
//! Storage may be unavailable (private modes, sandboxed frames): reads then find nothing
//! and writes are dropped, and the app works without memory.

use web_sys::{Storage, Window};

/// Which of the browser's two stores.
#[derive(Clone, Copy)]
enum Kind {
    /// `localStorage`: kept across page loads and shared by the origin's tabs.
    Local,
    /// `sessionStorage`: this tab only, gone when it closes.
    Session,
}

fn open(kind: Kind) -> Option<Storage> {
    let window: Window = web_sys::window()?;
    match kind {
        Kind::Local => window.local_storage(),
        Kind::Session => window.session_storage(),
    }
    .ok()
    .flatten()
}

fn read(kind: Kind, key: &str) -> Option<String> {
    open(kind)?.get_item(key).ok().flatten()
}

fn write(kind: Kind, key: &str, value: &str) {
    if let Some(storage) = open(kind) {
        let _ = storage.set_item(key, value);
    }
}

/// The value stored under `key`, if any.
pub fn get(key: &str) -> Option<String> {
    read(Kind::Local, key)
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: &str) {
    write(Kind::Local, key, value);
}

/// The value stored under `key` for this tab, if any.
pub fn session_get(key: &str) -> Option<String> {
    read(Kind::Session, key)
}

/// Stores `value` under `key` for this tab.
pub fn session_set(key: &str, value: &str) {
    write(Kind::Session, key, value);
}
