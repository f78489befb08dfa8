//! Per-subscription changes to a namespace's options (`override`), as the proxies, tokens and
//! the server API's `subscribe` carry them.

use rotor_tenant_config::ChannelOptions;
use serde::{Deserialize, Serialize};

/// `{"value": bool}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct BoolValue {
    pub value: bool,
}

/// Per-subscription changes to the namespace's options (connect and subscribe proxies, the
/// token `subs` claim, subscription tokens and the server API's `subscribe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Override {
    pub presence: Option<BoolValue>,
    pub join_leave: Option<BoolValue>,
    pub force_push_join_leave: Option<BoolValue>,
    pub force_recovery: Option<BoolValue>,
    pub force_positioning: Option<BoolValue>,
}

impl Override {
    /// Applies the overrides to a copy of a namespace's options.
    pub fn apply(&self, o: &mut ChannelOptions) {
        let set = |field: &mut bool, v: Option<BoolValue>| {
            if let Some(v) = v {
                *field = v.value;
            }
        };
        set(&mut o.presence, self.presence);
        set(&mut o.join_leave, self.join_leave);
        set(&mut o.force_push_join_leave, self.force_push_join_leave);
        set(&mut o.force_recovery, self.force_recovery);
        set(&mut o.force_positioning, self.force_positioning);
    }
}
