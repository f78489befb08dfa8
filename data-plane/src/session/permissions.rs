//! Who may do what in a channel (Centrifugo OSS rules, spec §6.2), for connections that are
//! not in insecure mode unless stated.

use rotor_tenant_config::ChannelOptions;

/// The caller as the permission rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user: &'a str,
    pub insecure: bool,
}

impl Caller<'_> {
    fn identified_or(&self, anonymous_allowed: bool) -> bool {
        !self.user.is_empty() || anonymous_allowed
    }
}

/// Subscribe without a token (rules 6 and 7; tokens and user-limited channels are checked by
/// the caller first).
pub fn may_subscribe(o: &ChannelOptions, caller: Caller<'_>) -> bool {
    (o.allow_subscribe_for_client && caller.identified_or(o.allow_subscribe_for_anonymous))
        || caller.insecure
}

/// Publish from a client.
pub fn may_publish(o: &ChannelOptions, caller: Caller<'_>, subscribed: bool) -> bool {
    (o.allow_publish_for_client && caller.identified_or(o.allow_publish_for_anonymous))
        || (o.allow_publish_for_subscriber
            && subscribed
            && caller.identified_or(o.allow_publish_for_anonymous))
        || caller.insecure
}

/// Read history.
pub fn may_read_history(o: &ChannelOptions, caller: Caller<'_>, subscribed: bool) -> bool {
    (o.allow_history_for_client && caller.identified_or(o.allow_history_for_anonymous))
        || (o.allow_history_for_subscriber
            && subscribed
            && caller.identified_or(o.allow_history_for_anonymous))
        || caller.insecure
}

/// Read presence.
pub fn may_read_presence(o: &ChannelOptions, caller: Caller<'_>, subscribed: bool) -> bool {
    (o.allow_presence_for_client && caller.identified_or(o.allow_presence_for_anonymous))
        || (o.allow_presence_for_subscriber
            && subscribed
            && caller.identified_or(o.allow_presence_for_anonymous))
        || caller.insecure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_users_need_the_anonymous_flag() {
        let o = ChannelOptions {
            allow_subscribe_for_client: true,
            ..Default::default()
        };
        assert!(may_subscribe(
            &o,
            Caller {
                user: "1",
                insecure: false
            }
        ));
        assert!(!may_subscribe(
            &o,
            Caller {
                user: "",
                insecure: false
            }
        ));
        let o = ChannelOptions {
            allow_subscribe_for_anonymous: true,
            ..o
        };
        assert!(may_subscribe(
            &o,
            Caller {
                user: "",
                insecure: false
            }
        ));
    }

    #[test]
    fn subscriber_permissions_need_a_subscription() {
        let o = ChannelOptions {
            allow_publish_for_subscriber: true,
            ..Default::default()
        };
        let c = Caller {
            user: "1",
            insecure: false,
        };
        assert!(!may_publish(&o, c, false));
        assert!(may_publish(&o, c, true));
        assert!(may_publish(
            &ChannelOptions::default(),
            Caller {
                user: "",
                insecure: true
            },
            false
        ));
        assert!(!may_read_history(&ChannelOptions::default(), c, true));
        assert!(!may_read_presence(&ChannelOptions::default(), c, true));
    }
}
