//! Tests of the configuration: layers, environment, validation.

// figment::Jail closures must return figment's (large) error type.
#![allow(clippy::result_large_err)]
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn durations_parse_with_units() -> TestResult {
    assert_eq!(duration::parse("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(duration::parse("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(duration::parse("12h"), Ok(Duration::from_secs(43_200)));
    assert_eq!(duration::parse(" 1h 30m "), Ok(Duration::from_secs(5400)));
    assert_eq!(duration::parse("250ms"), Ok(Duration::from_millis(250)));
    Ok(())
}

#[test]
fn durations_without_unit_or_garbage_are_refused() -> TestResult {
    for bad in ["30", "", "abc", "-5s", "5 parsecs", "1e3s"] {
        let err = duration::parse(bad).unwrap_err();
        assert!(err.contains("invalid duration"), "{bad}: {err}");
    }
    Ok(())
}

#[test]
fn durations_round_trip_through_format() -> TestResult {
    for d in [
        Duration::from_secs(90),
        Duration::from_secs(43_200),
        Duration::from_millis(1500),
    ] {
        assert_eq!(duration::parse(&duration::format(d)), Ok(d));
    }
    Ok(())
}

#[test]
fn layers_merge_in_order() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.create_file(
            "tessera.toml",
            "idle_timeout = \"10m\"\nabsolute_timeout = \"2h\"\nlisten = \"127.0.0.1:9000\"\n",
        )?;
        jail.set_env("TESSERA_ABSOLUTE_TIMEOUT", "3h");
        jail.set_env(
            "TESSERA_TRUSTED_ORIGINS",
            "https://a.example, https://b.example",
        );
        // Reported at start-up (unknown_env_vars), not an error.
        jail.set_env("TESSERA_UNRELATED_THING", "ignored");
        let overrides = Overrides {
            listen: Some(
                "127.0.0.1:9999"
                    .parse::<SocketAddr>()
                    .map_err(|e| e.to_string())?,
            ),
            ..Overrides::default()
        };
        let config =
            Config::load(Some(Path::new("tessera.toml")), &overrides).map_err(|e| e.to_string())?;
        // file beats default
        assert_eq!(config.idle_timeout, Duration::from_secs(600));
        // env beats file
        assert_eq!(config.absolute_timeout, Duration::from_secs(3 * 3600));
        // flag beats file
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(
            config.trusted_origins,
            vec![
                "https://a.example".to_owned(),
                "https://b.example".to_owned()
            ]
        );
        // untouched default
        assert_eq!(config.body_limit, 64 * 1024);
        Ok(())
    })?;
    Ok(())
}

#[test]
fn unknown_toml_keys_and_bad_durations_are_errors() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.create_file("typo.toml", "idle_timout = \"10m\"\n")?;
        let err = Config::load(Some(Path::new("typo.toml")), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("idle_timout"), "{err}");

        jail.create_file("bad.toml", "idle_timeout = \"10\"\n")?;
        let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn numeric_durations_name_the_missing_unit() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.set_env("TESSERA_IDLE_TIMEOUT", "30");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("a unit is required"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn unenforceable_policy_is_refused() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.set_env("TESSERA_TOUCH_STEP", "1h");
        jail.set_env("TESSERA_IDLE_TIMEOUT", "30m");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("touch_step (1h)"), "{err}");
        assert!(err.to_string().contains("idle_timeout (30m)"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn remember_class_is_off_unless_both_timeouts_are_set() -> TestResult {
    use tessera::policy::SessionClass;
    figment::Jail::try_with(|jail| {
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert!(!config.policy().offers(SessionClass::Remember));
        jail.set_env("TESSERA_REMEMBER_IDLE_TIMEOUT", "7d");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
        jail.set_env("TESSERA_REMEMBER_ABSOLUTE_TIMEOUT", "30d");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        let policy = config.policy();
        assert!(policy.offers(SessionClass::Remember));
        let remember = policy.lifetime(SessionClass::Remember);
        assert_eq!(remember.idle_timeout, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(
            remember.absolute_timeout,
            Duration::from_secs(30 * 24 * 3600)
        );
        // A short remember idle timeout alone: the derived step follows it.
        jail.set_env("TESSERA_REMEMBER_IDLE_TIMEOUT", "20s");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.effective_touch_step(), Duration::from_secs(2));
        // An explicit step must be shorter than it.
        jail.set_env("TESSERA_TOUCH_STEP", "30s");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("remember_idle_timeout (20s)"),
            "{err}"
        );
        Ok(())
    })?;
    Ok(())
}

#[test]
fn a_short_idle_timeout_alone_is_accepted_and_the_touch_step_follows() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.set_env("TESSERA_IDLE_TIMEOUT", "25s");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.touch_step, None);
        assert_eq!(config.effective_touch_step(), Duration::from_millis(2500));
        assert_eq!(config.policy().touch_step, Duration::from_millis(2500));
        // Long idle timeouts keep the 60 s step.
        jail.set_env("TESSERA_IDLE_TIMEOUT", "8h");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.effective_touch_step(), Duration::from_secs(60));
        // An explicit step is kept as given.
        jail.set_env("TESSERA_TOUCH_STEP", "5m");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.effective_touch_step(), Duration::from_secs(300));
        Ok(())
    })?;
    Ok(())
}

#[test]
fn unknown_tessera_variables_are_found_with_a_suggestion() -> TestResult {
    let unknown = unknown_env_vars([
        "TESSERA_IDEL_TIMEOUT",
        "TESSERA_SOMETHING_ELSE",
        "TESSERA_TEST_POSTGRES_URL",
        "TESSERA_TEST_CLOCK_FILE",
        "TESSERA_STORE",
        "tessera_store",
        "PATH",
    ]);
    assert_eq!(
        unknown,
        vec![
            UnknownVar {
                name: "TESSERA_IDEL_TIMEOUT".into(),
                did_you_mean: Some("TESSERA_IDLE_TIMEOUT".into()),
            },
            UnknownVar {
                name: "TESSERA_SOMETHING_ELSE".into(),
                did_you_mean: None,
            },
        ]
    );
    Ok(())
}

#[test]
fn cache_settings_come_from_the_environment_and_default_to_off() -> TestResult {
    figment::Jail::try_with(|jail| {
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.cache, values::CacheMode::Off);
        assert_eq!(config.cache_max_staleness, Duration::from_secs(1));
        jail.set_env("TESSERA_CACHE", "on");
        jail.set_env("TESSERA_CACHE_MAX_STALENESS", "250ms");
        jail.set_env("TESSERA_CACHE_MAX_ENTRIES", "5000");
        jail.set_env("TESSERA_CACHE_MAX_BYTES", "1048576");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.cache, values::CacheMode::On);
        assert_eq!(config.cache_max_staleness, Duration::from_millis(250));
        assert_eq!(config.cache_max_entries, 5000);
        assert_eq!(config.cache_max_bytes, 1_048_576);
        jail.set_env("TESSERA_CACHE", "maybe");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("`off` or `on`"), "{err}");
        jail.set_env("TESSERA_CACHE", "on");
        jail.set_env("TESSERA_CACHE_MAX_STALENESS", "2h");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("cache_max_staleness"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn a_zero_sweep_interval_is_refused() -> TestResult {
    let config = Config {
        sweep_interval: Duration::ZERO,
        ..Config::default()
    };
    assert!(config.validate().is_err());
    Ok(())
}

#[test]
fn store_settings_come_from_the_environment() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.set_env("TESSERA_STORE", "postgres://app:pw@db:5432/sessions");
        jail.set_env("TESSERA_DATABASE", "sqlite:///srv/users.db");
        jail.set_env("TESSERA_STORE_POOL_SIZE", "32");
        jail.set_env("TESSERA_STORE_TIMEOUT", "750ms");
        jail.set_env("TESSERA_STORE_CONNECT_TIMEOUT", "2s");
        jail.set_env("TESSERA_STORE_KEY_PREFIX", "app1:");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(config.store, "postgres://app:pw@db:5432/sessions");
        assert_eq!(config.database_url(), "sqlite:///srv/users.db");
        assert_eq!(config.store_pool_size, 32);
        assert_eq!(config.store_timeout, Duration::from_millis(750));
        assert_eq!(config.store_connect_timeout, Duration::from_secs(2));
        assert_eq!(config.store_key_prefix, "app1:");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn the_database_defaults_to_the_sql_store_else_its_own_file() -> TestResult {
    let mut config = Config::default();
    assert_eq!(config.database_url(), "sqlite://tessera.db");
    for url in [
        "sqlite:///data/s.db",
        "postgres://db/x",
        "postgresql://db/x",
        "mysql://db/x",
        "mariadb://db/x",
    ] {
        config.store = url.into();
        config.validate()?;
        assert_eq!(config.database_url(), url);
    }
    for url in [
        "redis://r:6379",
        "rediss://r:6380",
        "redis-cluster://a:1,b:2",
        "rediss-cluster://a:1,b:2",
    ] {
        config.store = url.into();
        config.validate()?;
        assert_eq!(config.database_url(), "sqlite://tessera.db", "{url}");
    }
    Ok(())
}

#[test]
fn unknown_store_schemes_and_non_sqlite_databases_are_refused() -> TestResult {
    let config = Config {
        store: "mongodb://u:topsecret@h/x".into(),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("unsupported store URL"), "{err}");
    assert!(!err.contains("topsecret"), "password redacted: {err}");
    let config = Config {
        database: Some("redis://u:topsecret@h/x".into()),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("unsupported database URL"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
    let config = Config {
        store_timeout: Duration::ZERO,
        ..Config::default()
    };
    assert!(config.validate().is_err());
    Ok(())
}

#[test]
fn trusted_proxies_come_from_a_list_or_a_string() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.create_file(
            "proxies.toml",
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nclient_ip_header = \"forwarded\"\n",
        )?;
        let config = Config::load(Some(Path::new("proxies.toml")), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(config.trusted_proxies.networks().len(), 2);
        assert_eq!(config.client_ip_header, ForwardedHeader::Forwarded);
        jail.set_env("TESSERA_TRUSTED_PROXIES", "192.168.0.0/16, 127.0.0.1");
        let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        let expected = "192.168.0.0/16,127.0.0.1/32"
            .parse::<TrustedProxies>()
            .map_err(|e| e.to_string())?;
        assert_eq!(config.trusted_proxies, expected);
        assert_eq!(config.client_ip_header, ForwardedHeader::XForwardedFor);
        jail.set_env("TESSERA_TRUSTED_PROXIES", "10.0.0.0/8, gateway");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("gateway"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn the_removed_trust_forwarded_for_names_its_replacement() -> TestResult {
    figment::Jail::try_with(|jail| {
        jail.create_file("old.toml", "trust_forwarded_for = true\n")?;
        let err = Config::load(Some(Path::new("old.toml")), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
        jail.set_env("TESSERA_TRUST_FORWARDED_FOR", "false");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[test]
fn missing_config_file_is_an_error() -> TestResult {
    let err = Config::load(
        Some(Path::new("/nonexistent/tessera.toml")),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::MissingFile(_)));
    Ok(())
}

#[test]
fn sign_in_edge_defaults_are_the_safe_ones_and_nonsense_is_refused() -> TestResult {
    let config = Config::default();
    assert!(!config.password_grant, "RFC 9700: password grant off");
    assert_eq!(config.password_hash_concurrency, None);
    assert_eq!(config.max_session_data, 16 * 1024);
    assert_eq!(config.token_client_id, "tessera");
    assert_eq!(config.policy().max_data_bytes, Some(16 * 1024));
    for bad in [
        Config {
            password_hash_concurrency: Some(0),
            ..Config::default()
        },
        Config {
            login_limiter_memory: 1024,
            ..Config::default()
        },
        Config {
            max_session_data: 0,
            ..Config::default()
        },
        Config {
            token_client_id: "a\nb".into(),
            ..Config::default()
        },
    ] {
        assert!(matches!(bad.validate(), Err(ConfigError::Invalid(_))));
    }
    Ok(())
}
