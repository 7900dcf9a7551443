//! The parts of the lab that run against real kernels, shared by the `samizdat-lab` binary
//! and the tests that start them in network namespaces.
#![forbid(unsafe_code)]

pub mod censor;
