//! The one error every service function fails with, in the domain's terms (bad input with its
//! field, not found, conflict, plan limit, …). The REST API turns it into its JSON error in
//! one place ([`crate::rest`]'s `IntoResponse`), the dashboard into an inline message or an
//! error page in one place ([`crate::web`]'s `From<ServiceError> for WebError` and its
//! refusal wording).

use std::time::Duration;

use crate::sealed::SealError;
use crate::secret_store::SecretError;

/// Everything a control-plane operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is not acceptable; `field` names the part that is wrong.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// Missing, wrong or expired credentials.
    #[error("missing or invalid credentials")]
    Unauthorized(&'static str),
    /// Nothing by that id for this account (another account's things are the same).
    #[error("not found")]
    NotFound,
    /// It exists already (or changed under the caller).
    #[error("{0}")]
    Conflict(String),
    /// The plan does not allow this.
    #[error("{0}")]
    PlanLimit(String),
    /// Only the operator may change this (plans, status, limits).
    #[error("{0}")]
    OperatorOnly(String),
    /// Too many failed logins or sign-ups; the same for every email.
    #[error("too many attempts, try again later")]
    TooManyRequests { retry_after: Duration },
    /// Password checks are queued beyond their bound, or the login counters are unreachable.
    #[error("the service is busy, try again in a moment")]
    Busy,
    /// A server of the customer's (their database) failed or refused.
    #[error("{0}")]
    Upstream(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// Result of a service operation.
pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// Bad input in `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            if db.code().as_deref() == Some("23505") {
                return Self::Conflict("already exists".into());
            }
        }
        Self::Internal(e.into())
    }
}

impl From<crate::secrets::PasswordError> for ServiceError {
    fn from(e: crate::secrets::PasswordError) -> Self {
        match e {
            crate::secrets::PasswordError::Busy => Self::Busy,
            other => Self::Internal(other.into()),
        }
    }
}

impl From<crate::limits::LimitError> for ServiceError {
    fn from(e: crate::limits::LimitError) -> Self {
        use crate::limits::LimitError;
        match e {
            e @ LimitError::Exceeded { .. } => Self::PlanLimit(e.to_string()),
            LimitError::Missing => Self::NotFound,
            LimitError::Db(e) => e.into(),
        }
    }
}

impl From<crate::auth_limits::LimitError> for ServiceError {
    fn from(e: crate::auth_limits::LimitError) -> Self {
        use crate::auth_limits::LimitError;
        match e {
            LimitError::Wait(retry_after) => Self::TooManyRequests { retry_after },
            LimitError::Db(e) => {
                tracing::error!(error = %e, "login and sign-up counters unavailable: refusing");
                Self::Busy
            }
        }
    }
}

impl From<SecretError> for ServiceError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Db(e) => e.into(),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<SealError> for ServiceError {
    fn from(e: SealError) -> Self {
        Self::Internal(e.into())
    }
}
