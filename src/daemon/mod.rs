//! `hbad run`: the agent that turns kernel events into vHBAs and targeted rescans.
//!
//! [`agent`] holds the state and makes the decisions (time passed in, testable),
//! [`run`] is the event loop around it, [`notify`] and [`status`] are what systemd
//! and people see of it.

pub mod agent;
mod alarm;
pub mod fleet;
pub mod health;
pub mod heap;
pub mod login;
pub mod notify;
pub mod run;
pub mod status;
pub mod wake;

pub use agent::{Agent, AgentConfig};
pub use run::{Control, LoopTimings};
