//! Pluggable transports: dial and listen giving byte streams (TCP, in-memory).
