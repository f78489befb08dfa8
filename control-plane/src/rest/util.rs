//! Shared pieces of the REST handlers that are not yet services of their own (webhook
//! redelivery, consumer outboxes): the audit entry of a change, as the services write it.

pub(crate) use crate::service::audit;
