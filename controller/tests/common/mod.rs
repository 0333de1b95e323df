//! Shared pieces of the controller tests.

#![allow(dead_code)]

pub mod mongo;
