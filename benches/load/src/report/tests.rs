use super::*;
use crate::scenario::{CpuUse, Echo, Outcome, Scenario, Throughput};
use std::time::Duration;

fn settings() -> Settings {
    Settings {
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(2),
        streams: 1,
        up_frame: 65_536,
        echo_size: 64,
        idle_sessions: 200,
        idle_ramp_timeout: Duration::from_secs(60),
        idle_min_free: 1 << 30,
        hs_concurrency: 8,
    }
}

#[test]
fn dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

#[test]
fn table_has_ratios_and_verdicts() {
    let t = |mb: f64, gateway: Option<f64>| Throughput {
        bytes: (mb * 1e6) as u64,
        secs: 1.0,
        cpu: CpuUse {
            gateway,
            ..CpuUse::default()
        },
    };
    let results = vec![
        Measurement {
            scenario: Scenario::Down,
            gateway: GatewayKind::Direct,
            security: Security::None,
            outcome: Ok(Outcome::Down(t(1000.0, None))),
        },
        Measurement {
            scenario: Scenario::Down,
            gateway: GatewayKind::Darts,
            security: Security::None,
            outcome: Ok(Outcome::Down(t(900.0, Some(0.45)))),
        },
        Measurement {
            scenario: Scenario::Down,
            gateway: GatewayKind::Darts,
            security: Security::VncPassword,
            outcome: Ok(Outcome::Down(t(880.0, Some(0.44)))),
        },
        Measurement {
            scenario: Scenario::Down,
            gateway: GatewayKind::Darts,
            security: Security::X509,
            outcome: Ok(Outcome::Down(t(600.0, Some(0.6)))),
        },
        Measurement {
            scenario: Scenario::Echo,
            gateway: GatewayKind::Darts,
            security: Security::None,
            outcome: Ok(Outcome::Echo(Echo {
                count: 1000,
                p50_us: 50.0,
                p99_us: 80.0,
                mean_us: 55.0,
                cpu: CpuUse {
                    gateway: Some(0.01),
                    ..CpuUse::default()
                },
            })),
        },
        Measurement {
            scenario: Scenario::Up,
            gateway: GatewayKind::Darts,
            security: Security::None,
            outcome: Err("boom".into()),
        },
    ];
    let header = Header {
        date: "2024-01-01".into(),
        machine: "test".into(),
        background: 0.0,
        repeat: 1,
        gateways: vec![],
        command: "darts-load".into(),
    };
    let text = render(&header, &settings(), &results);
    let row = |label: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_default()
            .to_owned()
    };
    let down = row("Downstream, MB/s");
    assert!(down.contains("| 1000 |") && down.contains("0.900×") && down.contains("PASS"));
    assert!(row("Downstream, gateway CPU-s").contains("**MISS**"));
    assert!(
        row("Echo round trip p50").ends_with("| ? |"),
        "no direct to compare"
    );
    assert!(row("Echo, gateway CPU-µs").contains("| 10.0 |"));
    assert!(row("Upstream (masked").contains("failed"));
    assert!(row("Idle sessions held").contains("not judged"));
    assert!(text.contains("FAILED: boom"));
    // The security table: vnc-password equals plain, x509 does not; its rows come
    // after the main table's.
    let secured = text.split("Security proxy").nth(1).unwrap();
    let down_cpu = secured
        .lines()
        .find(|l| l.starts_with("| Downstream, gateway CPU-s per GB"))
        .unwrap();
    assert!(
        down_cpu.contains("| 0.500 | 0.500 | 1.000 | n/a | 1.00× | 2.00× |"),
        "{down_cpu}"
    );
    assert!(
        down_cpu.ends_with("| ≤ 1.1× plain | PASS | **MISS** |"),
        "{down_cpu}"
    );
    assert!(text.contains("down / darts → x509 target #1: 600000000 bytes"));
}
