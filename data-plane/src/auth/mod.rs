//! Authentication: connection and subscription JWTs, and server API keys.
pub mod apikey;
mod compact;
pub mod jwks;
pub mod jwks_source;
pub mod jwt;
