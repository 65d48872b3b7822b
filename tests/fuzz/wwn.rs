//! WWNs as users, SAN teams and sysfs write them.

use hbad::wwn::{Wwn, WwnStyle};
use proptest::prelude::*;

use crate::harness::{fuzz, mutated, noise, text};

const STYLES: [WwnStyle; 3] = [WwnStyle::Sysfs, WwnStyle::Bare, WwnStyle::Colon];

const TOKENS: &[&[u8]] = &[
    b"0x",
    b"0X",
    b":",
    b"::",
    b" ",
    b"\n",
    b"\t",
    b"+",
    b"-",
    b"f",
    b"0",
    b"ffffffff",
    b"00000000",
    b"\xc3\xa9",
    b"\0",
    b"5001a4a",
    b"20:00",
];

fn seeds() -> Vec<Vec<u8>> {
    let samples = [
        0x2001_001b_32a9_da4e_u64,
        0x5001_a4a0_0000_0a01,
        0x1000_0000_c9a1_b2c3,
        0,
        u64::MAX,
        0x6000_0000_0000_0001,
    ];
    samples
        .iter()
        .flat_map(|&v| STYLES.map(|s| Wwn::from_u64(v).format(s).into_bytes()))
        .collect()
}

fn inputs() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => mutated(seeds(), TOKENS, 256),
        1 => noise(TOKENS, 256),
    ]
    .prop_map(|b| text(&b))
}

/// What `parse` accepts prints in every style as something it reads back the same;
/// the style never changes whether a value is accepted.
#[test]
fn fuzz_wwn_text_round_trips() {
    fuzz("wwn_text", 2000, inputs(), |input| {
        if let Ok(w) = input.parse::<Wwn>() {
            for style in STYLES {
                let shown = w.format(style);
                prop_assert_eq!(
                    shown.parse::<Wwn>().ok(),
                    Some(w),
                    "{:?} -> {}",
                    input,
                    shown
                );
            }
            prop_assert_eq!(w.to_string().parse::<Wwn>().ok(), Some(w));
        }
        Ok(())
    });
}

#[test]
fn fuzz_wwn_every_value_reads_back_the_same_in_every_style() {
    fuzz("wwn_values", 2000, any::<u64>(), |v| {
        let w = Wwn::from_u64(v);
        let parsed: Vec<Option<Wwn>> = STYLES
            .iter()
            .map(|&s| w.format(s).parse::<Wwn>().ok())
            .collect();
        for p in &parsed {
            prop_assert!(p.is_none() || *p == Some(w), "{:?} read back as {:?}", w, p);
        }
        prop_assert!(
            parsed.iter().all(Option::is_some) || parsed.iter().all(Option::is_none),
            "{:?} is accepted in some styles only: {:?}",
            w,
            parsed
        );
        Ok(())
    });
}

/// sysfs's reading: "no name" (0, all ones) is `None`, anything else it accepts reads
/// back the same from the way sysfs prints it.
#[test]
fn fuzz_wwn_from_sysfs() {
    fuzz("wwn_sysfs", 2000, inputs(), |input| {
        if let Some(w) = Wwn::from_sysfs(&input) {
            prop_assert!(
                w.as_u64() != 0 && w.as_u64() != u64::MAX,
                "{:?} -> {:?}",
                input,
                w
            );
            prop_assert_eq!(Wwn::from_sysfs(&w.format(WwnStyle::Sysfs)), Some(w));
        }
        Ok(())
    });
}
