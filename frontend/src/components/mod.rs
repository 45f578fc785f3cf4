//! The UI, one component per module.

mod app;
mod clock;
mod status;

pub use app::App;
pub use clock::Clock;
pub use status::StatusPill;
