//! Sans-IO node engine: peers, content serving and verified multi-source transfers.
