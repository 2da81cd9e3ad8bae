//! One module per cloud (and helm): each resource kind's read / diff / write against
//! the live API, for the engine ([`crate::engine`]) to order, plan and execute.

pub mod aws;
pub mod gcp;
pub mod helm;
pub mod http;
