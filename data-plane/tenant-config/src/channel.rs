//! Channel options (Centrifugo v6 names), namespaces, and how a channel name resolves to them.

use serde::{Deserialize, Serialize};

use crate::duration::ConfigDuration;

/// How a recovering subscription catches up: replay the stream, or take only the latest
/// publication (`cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryMode {
    /// Centrifugo also reads an empty string as `stream`.
    #[default]
    #[serde(alias = "")]
    Stream,
    Cache,
}

/// What a publication's `data` must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PublicationDataFormat {
    /// Any non-empty payload (Centrifugo's default, written as `""`).
    #[default]
    #[serde(rename = "")]
    Default,
    #[serde(rename = "json")]
    Json,
    #[serde(rename = "json_object")]
    JsonObject,
    #[serde(rename = "binary")]
    Binary,
}

/// A delta encoding subscribers may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaType {
    /// Fossil SCM's delta format.
    #[serde(rename = "fossil")]
    Fossil,
}

fn default_proxy_name() -> String {
    "default".to_owned()
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_duration(v: &ConfigDuration) -> bool {
    v.is_zero()
}

/// Declares the channel options once and derives both [`ChannelOptions`] and [`Namespace`]
/// (which is the options plus a `name`), so the two can never drift apart and unknown keys in
/// either are reported precisely.
macro_rules! channel_options {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = [$default:expr, $skip:literal] ),* $(,)?) => {
        /// Options of a channel namespace (or of channels without a namespace). Every field is
        /// Centrifugo v6's option of the same name; all default to off.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct ChannelOptions {
            $( $(#[doc = $doc])* #[serde(skip_serializing_if = $skip)] pub $field: $ty, )*
        }

        impl Default for ChannelOptions {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// A named channel namespace: channels `name:…` take these options.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Namespace {
            /// Namespace name, `^[-a-zA-Z0-9_]{2,}$`.
            pub name: String,
            $( $(#[doc = $doc])* #[serde(skip_serializing_if = $skip)] pub $field: $ty, )*
        }

        impl Default for Namespace {
            fn default() -> Self {
                Self::new(String::new(), ChannelOptions::default())
            }
        }

        impl Namespace {
            /// A namespace with the given name and options.
            pub fn new(name: impl Into<String>, options: ChannelOptions) -> Self {
                Self { name: name.into(), $( $field: options.$field, )* }
            }
            /// This namespace's channel options.
            pub fn options(&self) -> ChannelOptions {
                ChannelOptions { $( $field: self.$field.clone(), )* }
            }
        }

        /// Names of every channel option, in declaration order (for docs, forms and providers).
        pub const CHANNEL_OPTION_NAMES: &[&str] = &[$( stringify!($field), )*];

        /// Every channel option with its one-line description (the field's doc comment), in
        /// declaration order: help text for forms and generated docs.
        pub const CHANNEL_OPTION_DOCS: &[(&str, &str)] = &[$( (stringify!($field), concat!($($doc),*)), )*];
    };
}

channel_options! {
    /// Keep a presence set for channels of this namespace.
    presence: bool = [false, "is_false"],
    /// Publish join and leave events (needs presence).
    join_leave: bool = [false, "is_false"],
    /// Push join and leave events to every subscriber, not only those who asked.
    force_push_join_leave: bool = [false, "is_false"],
    /// Publications kept in history (history is on when both size and TTL are set).
    history_size: u32 = [0, "is_zero_u32"],
    /// How long publications stay in history.
    history_ttl: ConfigDuration = [ConfigDuration::default(), "is_zero_duration"],
    /// How long stream meta (epoch, top offset) lives; defaults to `channel.history_meta_ttl`.
    history_meta_ttl: ConfigDuration = [ConfigDuration::default(), "is_zero_duration"],
    /// Track every subscriber's stream position and detect gaps.
    force_positioning: bool = [false, "is_false"],
    /// Let clients ask for positioning.
    allow_positioning: bool = [false, "is_false"],
    /// Recover missed publications on every re-subscribe (needs history).
    force_recovery: bool = [false, "is_false"],
    /// Let clients ask for recovery.
    allow_recovery: bool = [false, "is_false"],
    /// How recovering subscribers catch up: `stream` (default) replays what they missed;
    /// `cache` gives them only the latest publication, as the channel's current state.
    force_recovery_mode: RecoveryMode = [RecoveryMode::Stream, "is_default_recovery_mode"],
    /// With `force_recovery` and `force_recovery_mode` `cache`: every subscribe, including
    /// server-side ones, gets the latest publication without the client asking to recover.
    auto_cache_recover: bool = [false, "is_false"],
    /// Anonymous users may subscribe (with `allow_subscribe_for_client`).
    allow_subscribe_for_anonymous: bool = [false, "is_false"],
    /// Any connected client may subscribe without a subscription token.
    allow_subscribe_for_client: bool = [false, "is_false"],
    /// Anonymous users may publish (with one of the publish permissions).
    allow_publish_for_anonymous: bool = [false, "is_false"],
    /// Subscribers of a channel may publish into it.
    allow_publish_for_subscriber: bool = [false, "is_false"],
    /// Any connected client may publish.
    allow_publish_for_client: bool = [false, "is_false"],
    /// Anonymous users may read presence.
    allow_presence_for_anonymous: bool = [false, "is_false"],
    /// Subscribers may read presence.
    allow_presence_for_subscriber: bool = [false, "is_false"],
    /// Any client may read presence.
    allow_presence_for_client: bool = [false, "is_false"],
    /// Anonymous users may read history.
    allow_history_for_anonymous: bool = [false, "is_false"],
    /// Subscribers may read history.
    allow_history_for_subscriber: bool = [false, "is_false"],
    /// Any client may read history.
    allow_history_for_client: bool = [false, "is_false"],
    /// Channels ending in `#user1,user2` admit only the users listed.
    allow_user_limited_channels: bool = [false, "is_false"],
    /// Regular expression the channel name (after the namespace) must match.
    channel_regex: String = [String::new(), "String::is_empty"],
    /// Required payload format: `""`, `json`, `json_object` or `binary`.
    publication_data_format: PublicationDataFormat = [PublicationDataFormat::Default, "is_default_data_format"],
    /// Delta encodings subscribers may ask for (`["fossil"]`): a subscriber with
    /// `delta: "fossil"` then gets each publication as a Fossil delta against the previous
    /// one when the publish asked for delta and the channel keeps history (else whole).
    allowed_delta_types: Vec<DeltaType> = [Vec::new(), "Vec::is_empty"],
    /// Every publication in these channels asks for delta, as if published with `delta: true`.
    delta_publish: bool = [false, "is_false"],
    /// Let subscribers pass a tags filter (`tf`) and receive only the publications whose
    /// `tags` match it, live and in recovery.
    allow_tags_filter: bool = [false, "is_false"],
    /// A client's publication is not delivered to the session that published it: not live to
    /// any of its connections, and not in their recovery or history read from a position
    /// (Rotor's own; the session is the connection token's `session_tag` claim, else the token).
    exclude_publisher: bool = [false, "is_false"],
    /// Ask the app backend whether a client may subscribe.
    subscribe_proxy_enabled: bool = [false, "is_false"],
    /// Which named proxy handles subscribe.
    subscribe_proxy_name: String = [default_proxy_name(), "is_default_proxy_name_ref"],
    /// Ask the app backend to accept (and maybe rewrite) client publications.
    publish_proxy_enabled: bool = [false, "is_false"],
    /// Which named proxy handles publish.
    publish_proxy_name: String = [default_proxy_name(), "is_default_proxy_name_ref"],
    /// Ask the app backend to extend subscriptions.
    sub_refresh_proxy_enabled: bool = [false, "is_false"],
    /// Which named proxy handles sub_refresh.
    sub_refresh_proxy_name: String = [default_proxy_name(), "is_default_proxy_name_ref"],
    /// Open a gRPC stream to the app backend for each client subscription: its first message
    /// answers the subscribe, later ones are publications for that one subscriber only (no
    /// history, recovery or positioning). Not with the subscribe, publish or sub_refresh proxy.
    subscribe_stream_proxy_enabled: bool = [false, "is_false"],
    /// Which named proxy (a `grpc://` endpoint) handles subscribe streams.
    subscribe_stream_proxy_name: String = [default_proxy_name(), "is_default_proxy_name_ref"],
    /// Make the subscribe stream bidirectional: the subscriber's publishes go up the stream to
    /// the backend instead of into the channel.
    subscribe_stream_proxy_bidirectional: bool = [false, "is_false"],
}

/// Centrifugo v6 channel options Rotor does not implement, each with the reason. A config
/// that sets one (to any value) is refused with the option's path and this reason, so no
/// option is accepted and then ignored. Empty today: every v6 channel option is implemented.
pub const REFUSED_CHANNEL_OPTIONS: &[(&str, &str)] = &[];

fn is_default_recovery_mode(m: &RecoveryMode) -> bool {
    *m == RecoveryMode::Stream
}

fn is_default_data_format(f: &PublicationDataFormat) -> bool {
    *f == PublicationDataFormat::Default
}

#[allow(clippy::ptr_arg)]
fn is_default_proxy_name_ref(name: &String) -> bool {
    name == "default"
}

impl ChannelOptions {
    /// History is on when both a size and a TTL are set.
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// Whether a subscription of these channels that recovers should recover in cache mode
    /// (and the server should start that recovery itself, the second value).
    pub fn cache_recovery(&self) -> (bool, bool) {
        let cache = self.force_recovery_mode == RecoveryMode::Cache;
        (cache, cache && self.auto_cache_recover)
    }
}
