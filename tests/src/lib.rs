//! Shared harness for Rotor's end-to-end tests.
