use std::net::SocketAddr;
use std::time::Duration;

use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn err(text: &str) -> ConfigError {
    Config::from_toml_str(text, "junction.toml").expect_err("expected an error")
}

fn err_env(text: &str, vars: &[(&str, &str)]) -> ConfigError {
    load_from_str(text, "junction.toml", env(vars)).expect_err("expected an error")
}

#[test]
fn defaults_load_with_no_file() {
    let c = load_from_str("", "junction.toml", Vec::new()).unwrap();
    assert_eq!(c, Config::default());
    let c2 = load(Some(std::path::Path::new("/nonexistent/junction.toml")), Vec::new());
    assert!(c2
        .unwrap_err()
        .to_string()
        .starts_with("/nonexistent/junction.toml: cannot read config file"));
    // Defaults as specified.
    assert_eq!(c.node.name, "junction@127.0.0.1");
    assert_eq!(
        c.listeners.tcp["default"].bind,
        "0.0.0.0:1883".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.listeners.ws["default"].bind.port(), 8083);
    assert_eq!(c.listeners.ws["default"].websocket.mqtt_path, "/mqtt");
    assert_eq!(c.listeners.ssl["default"].bind.port(), 8883);
    assert_eq!(c.listeners.wss["default"].bind.port(), 8084);
    assert_eq!(c.dashboard.listeners.http.bind.port(), 18083);
    assert_eq!(c.mqtt.max_packet_size, 1 << 20);
    assert_eq!(c.mqtt.session_expiry_interval, Duration::from_secs(7200));
    assert_eq!(c.mqtt.max_mqueue_len, Some(1000));
    assert_eq!(c.durable_storage.sync_interval, Duration::from_millis(100));
    // ssl/wss default listeners have no certificate, so only tcp and ws start.
    let active: Vec<String> = c.listeners.active().map(|l| l.id()).collect();
    assert_eq!(active, ["tcp:default", "ws:default"]);
}

#[test]
fn file_overrides_defaults() {
    let c = Config::from_toml_str(
        r#"
node.name = "j1@10.0.0.1"
log.level = "debug"

[mqtt]
max_packet_size = "64KB"
max_inflight = 64
keepalive_multiplier = 2
server_keepalive = 60
max_mqueue_len = "infinity"
message_expiry_interval = "1d"
shared_subscription_strategy = "hash_topic"

[listeners.tcp.default]
bind = "127.0.0.1:1884"
max_connections = 1000
messages_rate = "1000/s"
bytes_rate = "1MB/s"

[listeners.ssl.default.ssl_options]
certfile = "etc/cert.pem"
keyfile = "etc/key.pem"
verify = "verify_peer"

[sys_topics]
sys_msg_interval = "disabled"

[durable_storage]
sync_mode = "every_write"
"#,
        "junction.toml",
    )
    .unwrap();
    assert_eq!(c.node.name, "j1@10.0.0.1");
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.mqtt.max_packet_size, 64 * 1024);
    assert_eq!(c.mqtt.max_inflight, 64);
    assert_eq!(c.mqtt.keepalive_multiplier, 2.0);
    assert_eq!(c.mqtt.server_keepalive, Some(60));
    assert_eq!(c.mqtt.max_mqueue_len, None);
    assert_eq!(c.mqtt.message_expiry_interval, Some(Duration::from_secs(86400)));
    assert_eq!(
        c.mqtt.shared_subscription_strategy,
        SharedSubscriptionStrategy::HashTopic
    );
    assert_eq!(
        c.mqtt.retry_interval,
        Duration::from_secs(30),
        "untouched keys keep defaults"
    );
    let tcp = &c.listeners.tcp["default"];
    assert_eq!(tcp.bind, "127.0.0.1:1884".parse::<SocketAddr>().unwrap());
    assert_eq!(tcp.max_connections, Some(1000));
    assert_eq!(tcp.messages_rate.unwrap().per_second(), 1000.0);
    assert_eq!(tcp.bytes_rate.unwrap().amount, 1 << 20);
    let ssl = &c.listeners.ssl["default"];
    assert!(ssl.ssl_options.has_certificate());
    assert_eq!(ssl.ssl_options.verify, SslVerify::VerifyPeer);
    assert_eq!(ssl.bind.port(), 8883, "unset listener keys keep the type's defaults");
    assert_eq!(c.sys_topics.sys_msg_interval, None);
    assert_eq!(c.sys_topics.sys_heartbeat_interval, Some(Duration::from_secs(30)));
    assert_eq!(c.durable_storage.sync_mode, SyncMode::EveryWrite);
    assert_eq!(c.listeners.ws.len(), 1, "default listeners of other types remain");
    let active: Vec<String> = c.listeners.active().map(|l| l.id()).collect();
    assert_eq!(active, ["tcp:default", "ssl:default", "ws:default"]);
}

#[test]
fn env_overrides_file() {
    let file = "[mqtt]\nmax_inflight = 10\nretry_interval = \"5s\"\n[node]\nname = \"a@b\"\n";
    let c = load_from_str(
        file,
        "junction.toml",
        env(&[
            ("JUNCTION_MQTT__MAX_INFLIGHT", "64"),
            ("JUNCTION_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:1884"),
            ("JUNCTION_NODE__DATA_DIR", "/var/lib/junction"),
            ("JUNCTION_MQTT__RETAIN_AVAILABLE", "false"),
            ("JUNCTION_MQTT__RESPONSE_INFORMATION", "\"resp/\""),
            ("JUNCTION_LOG__LEVEL", "warn"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.mqtt.max_inflight, 64);
    assert_eq!(c.mqtt.retry_interval, Duration::from_secs(5));
    assert!(!c.mqtt.retain_available);
    assert_eq!(c.mqtt.response_information, "resp/");
    assert_eq!(c.node.name, "a@b");
    assert_eq!(c.node.data_dir, std::path::PathBuf::from("/var/lib/junction"));
    assert_eq!(
        c.listeners.tcp["default"].bind,
        "127.0.0.1:1884".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.log.level, LogLevel::Warn);
}

#[test]
fn new_listener_via_env() {
    let c = load_from_str(
        "",
        "junction.toml",
        env(&[
            ("JUNCTION_LISTENERS__TCP__SECOND__BIND", "1884"),
            ("JUNCTION_LISTENERS__WS__SECOND__WEBSOCKET__MQTT_PATH", "/ws"),
            ("JUNCTION_LISTENERS__WS__SECOND__BIND", "127.0.0.1:9083"),
        ]),
    )
    .unwrap();
    assert_eq!(c.listeners.tcp.len(), 2);
    assert_eq!(c.listeners.tcp["default"].bind.port(), 1883);
    let second = &c.listeners.tcp["second"];
    assert_eq!(second.bind, "0.0.0.0:1884".parse::<SocketAddr>().unwrap());
    assert!(second.enable);
    let ws = &c.listeners.ws["second"];
    assert_eq!(ws.websocket.mqtt_path, "/ws");
    assert!(ws.enable && ws.bind.port() == 9083);
    // Without a bind, a new ws listener gets the ws default port, which clashes
    // with ws.default: reported at the variable that created the listener.
    let e = err_env("", &[("JUNCTION_LISTENERS__WS__SECOND__WEBSOCKET__MQTT_PATH", "/ws")]);
    assert_eq!(
        e.to_string(),
        "env JUNCTION_LISTENERS__WS__SECOND__WEBSOCKET__MQTT_PATH: listeners.ws.second.bind: \
         address 0.0.0.0:8083 is also used by listeners.ws.default.bind"
    );
}

#[test]
fn bare_port_bind() {
    let c = Config::from_toml_str(
        "listeners.tcp.default.bind = 1884\ndashboard.listeners.http.bind = \":18084\"\n[listeners.ws.default]\nbind = \"[::1]:8090\"\n",
        "junction.toml",
    )
    .unwrap();
    assert_eq!(
        c.listeners.tcp["default"].bind,
        "0.0.0.0:1884".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.dashboard.listeners.http.bind,
        "0.0.0.0:18084".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.listeners.ws["default"].bind,
        "[::1]:8090".parse::<SocketAddr>().unwrap()
    );
    let e = err("listeners.tcp.default.bind = 70000\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:30: listeners.tcp.default.bind: invalid port 70000 (allowed: 0..=65535)"
    );
}

#[test]
fn unknown_key_with_position_and_suggestion() {
    let text = "[node]\nname = \"x@y\"\n\n[mqtt]\nmax_packet_size = \"1MB\"\n\nmax_infligth = 5\n";
    let e = err(text);
    assert_eq!(
        e.to_string(),
        "junction.toml:7:1: unknown key `mqtt.max_infligth` (did you mean `max_inflight`?)"
    );
    let d = &e.diagnostics[0];
    assert_eq!(
        (d.line, d.col, d.key.as_str(), d.kind),
        (7, 1, "mqtt.max_infligth", DiagnosticKind::UnknownKey)
    );

    // Unknown section: lists the choices when there are few.
    let e = err("[listeners.quic.default]\nbind = 1\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:12: unknown key `listeners.quic` (expected one of: tcp, ssl, ws, wss)"
    );
    // Unknown key inside a named listener, and inside an inline table.
    let e = err("[listeners.tcp.main]\nbindd = 1884\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:2:1: unknown key `listeners.tcp.main.bindd` (did you mean `bind`?)"
    );
    let e = err("listeners.ws.default = { websocket = { path = \"/x\" } }\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:40: unknown key `listeners.ws.default.websocket.path` (did you mean `mqtt_path`?)"
    );
    // From env.
    let e = err_env("", &[("JUNCTION_MQTT__MAX_INFLIGTH", "5"), ("JUNCTION_MQTTT__X", "1")]);
    assert_eq!(
        e.to_string(),
        "env JUNCTION_MQTTT__X: unknown key `mqttt` (did you mean `mqtt`?)\n\
         env JUNCTION_MQTT__MAX_INFLIGTH: unknown key `mqtt.max_infligth` (did you mean `max_inflight`?)"
    );
    let e = err_env("", &[("JUNCTION_MQTT____X", "5")]);
    assert!(
        e.to_string()
            .starts_with("env JUNCTION_MQTT____X: invalid variable name"),
        "{e}"
    );
}

#[test]
fn bad_size_and_duration() {
    let e = err("[mqtt]\nmax_packet_size = \"12XB\"\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:2:19: mqtt.max_packet_size: invalid size \"12XB\" (expected e.g. 1MB, 512KB, 1024)"
    );
    let d = &e.diagnostics[0];
    assert_eq!((d.line, d.col, d.kind), (2, 19, DiagnosticKind::InvalidValue));
    assert_eq!(d.key, "mqtt.max_packet_size");
    assert_eq!(d.message, "invalid size \"12XB\" (expected e.g. 1MB, 512KB, 1024)");

    let e = err("mqtt.max_packet_size = \"1GB\"\n");
    assert_eq!(
        e.diagnostics[0].message,
        "size 1073741824 bytes is out of range (allowed: 1..=268435456 bytes)"
    );
    let e = err("mqtt.retry_interval = 30\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:23: mqtt.retry_interval: invalid duration 30: a duration needs a unit (expected e.g. \"30s\", \"100ms\", \"2h\", \"1d\")"
    );
    let e = err("mqtt.retry_interval = \"30 seconds\"\n");
    assert!(
        e.diagnostics[0].message.starts_with("invalid duration \"30 seconds\""),
        "{e}"
    );
    let e = err("sys_topics.sys_msg_interval = \"0s\"\n");
    assert_eq!(
        e.diagnostics[0].message,
        "a zero interval is not allowed (use \"disabled\")"
    );
    let e = err("listeners.tcp.default.messages_rate = 1000\n");
    assert_eq!(
        e.diagnostics[0].message,
        "invalid rate 1000: a rate needs a period, e.g. \"1000/s\""
    );
}

#[test]
fn bad_enum_value() {
    let e = err("[mqtt]\nshared_subscription_strategy = \"roundrobin\"\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:2:32: mqtt.shared_subscription_strategy: invalid value \"roundrobin\" \
         (expected one of: random, round_robin, sticky, hash_clientid, hash_topic; did you mean \"round_robin\"?)"
    );
    let e = err_env("", &[("JUNCTION_LOG__LEVEL", "verbose")]);
    assert_eq!(
        e.to_string(),
        "env JUNCTION_LOG__LEVEL: invalid value \"verbose\" (expected one of: error, warn, warning, info, debug, trace)"
    );
    let e = err("durable_storage.sync_mode = 1\n");
    assert_eq!(
        e.diagnostics[0].message,
        "expected one of: every_write, interval, found integer 1"
    );
    // The EMQX alias is accepted.
    assert_eq!(
        Config::from_toml_str("log.level = \"warning\"", "x").unwrap().log.level,
        LogLevel::Warn
    );
}

#[test]
fn bad_types() {
    let e = err_env("", &[("JUNCTION_MQTT__MAX_INFLIGHT", "abc")]);
    assert_eq!(
        e.to_string(),
        "env JUNCTION_MQTT__MAX_INFLIGHT: invalid integer \"abc\""
    );
    assert_eq!(e.diagnostics[0].key, "mqtt.max_inflight");
    assert_eq!((e.diagnostics[0].line, e.diagnostics[0].col), (0, 0));
    let e = err("mqtt.max_inflight = \"64\"\n");
    assert_eq!(
        e.diagnostics[0].message,
        "invalid integer \"64\" (write numbers without quotes)"
    );
    let e = err("mqtt.max_inflight = 0\n");
    assert_eq!(e.diagnostics[0].message, "0 is out of range (allowed: 1..=65535)");
    let e = err("mqtt.retain_available = \"yes\"\n");
    assert_eq!(
        e.diagnostics[0].message,
        "invalid boolean \"yes\" (expected true or false)"
    );
    let e = err_env("", &[("JUNCTION_MQTT__UPGRADE_QOS", "maybe")]);
    assert_eq!(
        e.diagnostics[0].message,
        "invalid boolean \"maybe\" (expected true or false)"
    );
    let e = err("mqtt = 5\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:8: mqtt: expected a table, found integer 5"
    );
    let e = err("[mqtt.max_inflight]\nx = 1\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:7: mqtt.max_inflight: expected an integer, found a table"
    );
    let e = err("node.name = 5\n");
    assert_eq!(e.diagnostics[0].message, "expected a string, found integer 5");
    let e = err("mqtt.keepalive_multiplier = 0\n");
    assert_eq!(
        e.diagnostics[0].message,
        "invalid value: number 0 (expected a number greater than 0)"
    );
    let e = err("listeners.ws.default.websocket.mqtt_path = \"mqtt\"\n");
    assert_eq!(
        e.diagnostics[0].message,
        "invalid path \"mqtt\" (must start with \"/\")"
    );
}

#[test]
fn several_errors_at_once() {
    let text = "\
[mqtt]
max_packet_size = \"12XB\"
max_inflight = -1
retry_interval = \"soon\"
bogus = 1

[listeners.tcp.default]
bind = \"nowhere\"
";
    let e = err_env(
        text,
        &[
            ("JUNCTION_MQTT__MAX_AWAITING_REL", "abc"),
            ("JUNCTION_NODE__NAMEX", "n"),
        ],
    );
    let lines: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "junction.toml:2:19: mqtt.max_packet_size: invalid size \"12XB\" (expected e.g. 1MB, 512KB, 1024)",
            "junction.toml:3:16: mqtt.max_inflight: -1 is out of range (allowed: 1..=65535)",
            "junction.toml:4:18: mqtt.retry_interval: invalid duration \"soon\" (expected e.g. \"30s\", \"100ms\", \"2h\", \"1d\")",
            "junction.toml:5:1: unknown key `mqtt.bogus`",
            "junction.toml:8:8: listeners.tcp.default.bind: invalid bind address \"nowhere\" (expected IP:PORT such as \"0.0.0.0:1883\" or a port number)",
            "env JUNCTION_MQTT__MAX_AWAITING_REL: invalid integer \"abc\"",
            "env JUNCTION_NODE__NAMEX: unknown key `node.namex` (did you mean `name`?)",
        ]
    );
    assert_eq!(e.to_string(), lines.join("\n"));
}

#[test]
fn syntax_error_has_position() {
    let e = err("[mqtt]\nmax_inflight = \n");
    let d = &e.diagnostics[0];
    assert_eq!(d.kind, DiagnosticKind::Syntax);
    assert_eq!((d.line, d.col), (2, 16));
    assert!(e.to_string().starts_with("junction.toml:2:16: invalid TOML: "), "{e}");
    let e = err("a = 1\na = 2\n");
    assert_eq!(e.diagnostics[0].kind, DiagnosticKind::Syntax);
}

#[test]
fn env_values_are_toml_or_plain_strings() {
    let c = load_from_str(
        "",
        "x",
        env(&[
            ("JUNCTION_NODE__NAME", "node@host"),
            ("JUNCTION_NODE__DATA_DIR", "2024-01-01"),
            ("JUNCTION_MQTT__KEEPALIVE_MULTIPLIER", "1.25"),
            ("JUNCTION_MQTT__RESPONSE_INFORMATION", ""),
            ("JUNCTION_MQTT__MAX_MQUEUE_LEN", "infinity"),
            ("JUNCTION_MQTT__SESSION_EXPIRY_INTERVAL", "\"1h\""),
        ]),
    )
    .unwrap();
    assert_eq!(c.node.name, "node@host");
    assert_eq!(c.node.data_dir, std::path::PathBuf::from("2024-01-01"));
    assert_eq!(c.mqtt.keepalive_multiplier, 1.25);
    assert_eq!(c.mqtt.response_information, "");
    assert_eq!(c.mqtt.max_mqueue_len, None);
    assert_eq!(c.mqtt.session_expiry_interval, Duration::from_secs(3600));
    // An env var replacing a whole section with a scalar is a type error.
    let e = err_env("", &[("JUNCTION_MQTT", "1")]);
    assert_eq!(e.to_string(), "env JUNCTION_MQTT: expected a table, found integer 1");
}

#[test]
fn cross_key_checks() {
    let e = err("[mqtt]\nmin_keepalive = 100\nmax_keepalive = 60\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:2:17: mqtt.min_keepalive: min_keepalive (100) is greater than max_keepalive (60)"
    );
    let e = err("listeners.ssl.default.ssl_options.certfile = \"c.pem\"\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:46: listeners.ssl.default.ssl_options.certfile: certfile is set but keyfile is not (both are needed)"
    );
    // A new listener on the default listener's port.
    let e = err("[listeners.tcp.second]\nbind = \"127.0.0.1:1883\"\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:2:8: listeners.tcp.second.bind: address 127.0.0.1:1883 is also used by listeners.tcp.default.bind"
    );
    // Moving the default onto another listener's port names the other one.
    let e = err("listeners.tcp.default.bind = 8083\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:30: listeners.tcp.default.bind: address 0.0.0.0:8083 is also used by listeners.ws.default.bind"
    );
    // Disabled listeners, listeners without certificates and port 0 never clash.
    Config::from_toml_str(
        "listeners.tcp.default.enable = false\nlisteners.tcp.b.bind = 1883\nlisteners.ssl.x.bind = 1883\n\
         listeners.tcp.c.bind = 0\nlisteners.tcp.d.bind = \"127.0.0.1:0\"\n",
        "x",
    )
    .unwrap();
    let e = err("[listeners.tcp.\"a.b\"]\nbind = 1\n");
    assert_eq!(
        e.to_string(),
        "junction.toml:1:16: listeners.tcp.a.b: invalid listener name \"a.b\" (use letters, digits, '_' and '-')"
    );
}

#[test]
fn mqueue_len_zero_means_unlimited() {
    let c = Config::from_toml_str("mqtt.max_mqueue_len = 0", "x").unwrap();
    assert_eq!(c.mqtt.max_mqueue_len, None);
    let c = Config::from_toml_str("mqtt.max_mqueue_len = 5", "x").unwrap();
    assert_eq!(c.mqtt.max_mqueue_len, Some(5));
}

#[test]
fn env_names_that_are_not_config() {
    // Test tooling variables pass through; single-underscore typos do not.
    let c = load_from_str(
        "",
        "x",
        env(&[
            ("JUNCTION_BIN", "/x/junction"),
            ("JUNCTION_REQUIRE_SERVICES", "1"),
            ("JUNCTION_VENV", "/v"),
        ]),
    )
    .unwrap();
    assert_eq!(c, Config::default());
    let e = err_env(
        "",
        &[
            ("JUNCTION_MQTT_MAX_INFLIGHT", "5"),
            ("JUNCTION_SYS_TOPICS_SYS_MSG_INTERVAL", "1s"),
        ],
    );
    assert_eq!(
        e.to_string(),
        "env JUNCTION_MQTT_MAX_INFLIGHT: invalid variable name: key levels are separated by a double underscore \
         (did you mean JUNCTION_MQTT__MAX_INFLIGHT?)\n\
         env JUNCTION_SYS_TOPICS_SYS_MSG_INTERVAL: invalid variable name: key levels are separated by a double \
         underscore (did you mean JUNCTION_SYS_TOPICS__SYS_MSG_INTERVAL?)"
    );
    let e = err_env("", &[("JUNCTION_NODE", "x")]);
    assert_eq!(e.to_string(), "env JUNCTION_NODE: expected a table, found string \"x\"");
}

#[test]
fn top_level_keys_match_schema() {
    let e = err("zzzzzz = 1");
    assert_eq!(
        e.diagnostics[0].message,
        format!("unknown key `zzzzzz` (expected one of: {})", TOP_LEVEL_KEYS.join(", "))
    );
}

#[test]
fn subscribe_by_broker_is_a_table_or_a_list() {
    let c = Config::from_toml_str(
        "[mqtt]\nsubscribe_by_broker = { connector = \"pg\", query = \"SELECT topic FROM s WHERE c = ${clientid}\", timeout = \"500ms\" }\n",
        "junction.toml",
    )
    .unwrap();
    assert_eq!(c.mqtt.subscribe_by_broker.len(), 1);
    assert_eq!(c.mqtt.subscribe_by_broker[0].connector, "pg");
    assert_eq!(c.mqtt.subscribe_by_broker[0].timeout, Duration::from_millis(500));
    let c = Config::from_toml_str(
        "[[mqtt.subscribe_by_broker]]\nconnector = \"cache\"\n[[mqtt.subscribe_by_broker]]\nconnector = \"pg\"\n",
        "junction.toml",
    )
    .unwrap();
    assert_eq!(c.mqtt.subscribe_by_broker.len(), 2);
    assert_eq!(c.mqtt.subscribe_by_broker[0].query, None);
    assert_eq!(c.mqtt.subscribe_by_broker[1].timeout, Duration::from_secs(2));
    let c = load_from_str(
        "",
        "junction.toml",
        env(&[("JUNCTION_MQTT__SUBSCRIBE_BY_BROKER", "{ connector = \"r\" }")]),
    )
    .unwrap();
    assert_eq!(c.mqtt.subscribe_by_broker[0].connector, "r");
    let e = err("[mqtt]\nsubscribe_by_broker = { connector = \"pg\", timeout = \"0s\" }\n");
    assert!(e.to_string().contains("more than zero"), "{e}");
    let e = err("[mqtt]\nsubscribe_by_broker = { conector = \"pg\" }\n");
    assert!(e.to_string().contains("conector"), "{e}");
    let e = err("[mqtt]\nsubscribe_by_broker = \"pg\"\n");
    assert!(e.to_string().contains("a table or a list of tables"), "{e}");
}
