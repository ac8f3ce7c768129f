//! Fixtures shared by the integration tests in `tests/`.
//!
//! Each integration test is its own crate and includes this directory with
//! `mod support;`. A test uses only some of the helpers, so unused ones are
//! not an error.
#![allow(dead_code)]

pub mod carbon;
