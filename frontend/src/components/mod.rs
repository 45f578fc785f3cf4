//! The UI, one component per module.

mod app;
mod notification_item;
mod notification_panel;
mod server_clock;
mod status_pill;
mod streams_card;
mod trigger_form;

pub use app::App;
pub use notification_item::{NotificationItem, Now};
pub use notification_panel::NotificationPanel;
pub use server_clock::ServerClock;
pub use status_pill::StatusPill;
pub use streams_card::StreamsCard;
pub use trigger_form::TriggerForm;
