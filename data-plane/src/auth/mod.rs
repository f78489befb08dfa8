//! Authentication: connection and subscription JWTs, and server API keys.
pub mod apikey;
pub mod jwks;
pub mod jwt;
