//! Small values remembered across page loads, in `localStorage`.
//!
//! Storage may be unavailable (private modes, sandboxed frames): reads then find nothing
//! and writes are dropped, and the app works without memory.

fn local() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The value stored under `key`, if any.
pub fn get(key: &str) -> Option<String> {
    local()?.get_item(key).ok().flatten()
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: &str) {
    if let Some(storage) = local() {
        let _ = storage.set_item(key, value);
    }
}
