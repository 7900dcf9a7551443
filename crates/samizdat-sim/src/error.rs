//! The simulator's error type.

use crate::NodeId;

/// A scenario asked the simulator for something impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// No node has this id.
    #[error("no node with id {0}")]
    UnknownNode(NodeId),
    /// The node is crashed, so the operation (e.g. `crash`, `with_host`) does not apply.
    #[error("node {0} is crashed")]
    NodeDown(NodeId),
    /// The node is running, so it cannot be restarted.
    #[error("node {0} is running")]
    NodeUp(NodeId),
    /// A link joins two distinct nodes.
    #[error("a link needs two distinct nodes, got {0} twice")]
    SelfLink(NodeId),
    /// A link configuration is out of range.
    #[error("invalid link configuration: {0}")]
    InvalidLink(&'static str),
}
