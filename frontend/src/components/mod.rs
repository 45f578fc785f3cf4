//! The UI, one component per module.

mod app;
mod clock;
mod notifications;
mod status;
mod trigger;

pub use app::App;
pub use clock::Clock;
pub use notifications::{NotificationPanel, Now};
pub use status::StatusPill;
pub use trigger::TriggerForm;
