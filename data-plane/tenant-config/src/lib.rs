//! The configuration a Rotor data plane accepts.
