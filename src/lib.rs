//! jetstart-rs: a fast, safe development server for Android Jetpack Compose apps, speaking
//! JetStart's wire protocol.

pub mod adb;
pub mod authority;
pub mod bounded;
pub mod builder;
pub mod cli;
pub mod client;
pub mod dev;
pub mod events;
pub mod expiry;
pub mod gradle;
pub mod http;
pub mod hub;
pub mod keys;
pub mod limits;
pub mod lock;
pub mod pairing;
pub mod project_file;
pub mod protocol;
pub mod publish;
pub mod rotate;
pub mod sanitize;
pub mod session;
pub mod term;
pub mod watch;
