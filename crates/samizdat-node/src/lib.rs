//! Samizdat node runtime: drives the sans-IO engine with tokio and offers the async Node API.
