//! Parsing, printing and firing faults.

use super::*;

#[test]
fn every_spec_kind_in_the_issue_parses() {
    for spec in [
        "drop-connection,every=5",
        "reject,condition=amqp:internal-error,every=3",
        "reject,condition=com.microsoft:timeout,p=0.05",
        "throttle,every=2",
        "detach,every=4",
        "delay,ms=250",
        "stall,every=7",
        "release,hub=eh1,partition=2",
        "slow-attach,ms=500,partition=1",
    ] {
        let fault: Fault = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
        let again: Fault = fault.to_string().parse().unwrap();
        assert_eq!(fault, again, "{spec} survives a round trip");
    }
}

#[test]
fn bad_specs_name_the_problem() {
    let cases = [
        ("", "unknown kind"),
        ("explode", "unknown kind"),
        ("delay", "delay needs ms"),
        ("slow-attach", "slow-attach needs ms"),
        ("delay,ms=soon", "not a number"),
        ("reject,every=0", "at least 1"),
        ("reject,every=2,p=0.5", "not both"),
        ("reject,p=2", "probability"),
        ("throttle,condition=x", "does not take 'condition'"),
        ("reject,every", "not key=value"),
    ];
    for (spec, needle) in cases {
        let e = spec.parse::<Fault>().unwrap_err().to_string();
        assert!(e.contains(needle), "{spec:?} gave {e:?}");
    }
}

#[test]
fn every_n_fires_on_each_nth_transfer_in_scope() {
    let f = ActiveFault::new("throttle,every=3,hub=eh1,partition=1".parse().unwrap());
    let fired: Vec<bool> = (0..6)
        .map(|_| f.check("EH1", "1", false).is_some())
        .collect();
    assert_eq!(fired, [false, false, true, false, false, true]);
    assert!(f.check("eh2", "1", false).is_none());
    assert!(f.check("eh1", "0", false).is_none());
}

#[test]
fn attach_faults_count_attaches_and_transfer_faults_transfers() {
    let slow = ActiveFault::new("slow-attach,ms=10,every=2".parse().unwrap());
    assert!(slow.check("h", "0", false).is_none(), "not on transfers");
    let fired: Vec<bool> = (0..4)
        .map(|_| slow.check("h", "0", true).is_some())
        .collect();
    assert_eq!(fired, [false, true, false, true]);
    let stall = ActiveFault::new("stall".parse().unwrap());
    assert!(stall.check("h", "0", true).is_none(), "not on attaches");
    assert!(stall.check("h", "0", false).is_some());
}

#[test]
fn a_count_limits_how_often_a_fault_fires() {
    let f = ActiveFault::new("release,count=2".parse().unwrap());
    let fired = (0..5)
        .filter(|_| f.check("h", "0", false).is_some())
        .count();
    assert_eq!(fired, 2);
}

#[test]
fn probability_is_roughly_right_and_repeatable() {
    let run = || {
        let f = ActiveFault::new("throttle,p=0.1,seed=42".parse().unwrap());
        (0..10_000)
            .map(|_| f.check("h", "0", false).is_some())
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    let hits = a.iter().filter(|x| **x).count();
    assert!((800..1200).contains(&hits), "{hits} hits of 10000 at p=0.1");
}
