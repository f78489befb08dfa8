//! Rotor data plane.
