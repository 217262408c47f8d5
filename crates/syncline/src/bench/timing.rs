//! `syncline bench --timing`: does refusing a forged signature take longer the more of it
//! matches? (RELIABILITY row 13.) For HubSpot v1, v3 and Stripe, it times verification of
//! forgeries that differ from the true signature in their first byte and in their last, in
//! random interleaved order, and compares the two with Welch's t-test, one-sided in the
//! direction of a leak (a longer matching prefix taking longer): p > 0.01 means no detectable
//! dependence. A control run on a deliberately early-exit comparison shows the check can see
//! one. A statistical check, so a benchmark that prints its figures rather than a test that
//! fails on a noisy machine.

use std::time::Instant;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use syncline_server::HubSpotVersion;
use syncline_server::signature::{self, Secret, Signed, sign};

use crate::exit::{CliError, CliResult, Exit};

const SAMPLES: usize = 20_000;
/// Verifications per timed sample, so each sample is well above the timer's resolution.
const PER_SAMPLE: usize = 8;
const SECRET: &str = "timing-secret";
const URL: &str = "https://hooks.example.com/webhooks/hubspot";

/// A signature with one character changed at `at` (a forgery sharing everything else).
fn flip(signature: &str, at: usize) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    chars[at] = match chars[at] {
        '0' => '1',
        'A' => 'B',
        'a' => 'b',
        _ => '0',
    };
    chars.into_iter().collect()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).expect("ascii"))).collect()
}

/// Mean and variance of the samples up to the pooled 99th percentile (outliers from the shared
/// machine's scheduling would otherwise dominate the variance).
fn cropped(samples: &[f64], limit: f64) -> (f64, f64, usize) {
    let kept: Vec<f64> = samples.iter().copied().filter(|s| *s <= limit).collect();
    let n = kept.len() as f64;
    let mean = kept.iter().sum::<f64>() / n;
    let variance = kept.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, variance, kept.len())
}

/// The one-sided p-value P(T ≥ t) of a t statistic with thousands of degrees of freedom (the
/// normal approximation; Abramowitz & Stegun 7.1.26 for erfc, |error| < 1.5e-7). Written here
/// because a statistics crate for one function would be the heavier choice.
fn p_value(t: f64) -> f64 {
    let x = t.abs() / std::f64::consts::SQRT_2;
    let k = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = k * (0.254_829_592 + k * (-0.284_496_736 + k * (1.421_413_741 + k * (-1.453_152_027 + k * 1.061_405_429))));
    let tail = (poly * (-x * x).exp()).clamp(0.0, 1.0) / 2.0;
    if t >= 0.0 { tail } else { 1.0 - tail }
}

/// Times `verify` on the two forgeries and prints the comparison; true when p > 0.01.
fn compare(name: &str, early: &HeaderMap, late: &HeaderMap, verify: impl Fn(&HeaderMap) -> bool) -> bool {
    assert!(!verify(early) && !verify(late), "forgeries must be refused");
    let mut rng = fastrand::Rng::with_seed(13);
    let (mut a, mut b) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..2 * SAMPLES {
        let first = rng.bool();
        // a fresh copy per sample, so where each forgery happens to sit in memory (cache lines,
        // alignment) is random too rather than a constant difference between the two
        let forged = if first { early } else { late }.clone();
        let started = Instant::now();
        for _ in 0..PER_SAMPLE {
            std::hint::black_box(verify(std::hint::black_box(&forged)));
        }
        let ns = started.elapsed().as_nanos() as f64 / PER_SAMPLE as f64;
        if first { a.push(ns) } else { b.push(ns) }
    }
    let mut pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let limit = pooled[pooled.len() * 99 / 100];
    let ((ma, va, na), (mb, vb, nb)) = (cropped(&a, limit), cropped(&b, limit));
    // positive when the forgery that matches longer takes longer, as an early exit would
    let t = (mb - ma) / (va / na as f64 + vb / nb as f64).sqrt();
    let p = p_value(t);
    let verdict = if p > 0.01 { "no dependence detected" } else { "DEPENDS on the matching prefix" };
    println!(
        "{name:<10} first byte wrong {ma:>8.0} ns, last byte wrong {mb:>8.0} ns (n = {na}/{nb}): Welch t = {t:+.2}, p = {p:.3} → {verdict}"
    );
    p > 0.01
}

pub fn run() -> CliResult {
    println!("timing of refused forgeries, {SAMPLES} samples each of {PER_SAMPLE} verifications …");
    let body = br#"[{"eventId":1,"subscriptionId":7,"portalId":62515,"occurredAt":1764000000000,"subscriptionType":"contact.creation","objectId":1}]"#;
    let secrets = [Secret::new(SECRET)];
    let all = [HubSpotVersion::V1, HubSpotVersion::V2, HubSpotVersion::V3];
    let request = Signed { method: "POST", url: URL, body };
    let now = chrono::Utc::now().timestamp_millis();
    let hubspot = |h: &HeaderMap| signature::verify_hubspot(request, h, &secrets, &all, now).is_ok();

    let v1 = sign::hubspot_v1(SECRET, body);
    let v1_headers = |s: String| headers(&[("x-hubspot-signature", s), ("x-hubspot-signature-version", "v1".into())]);
    let mut independent = compare("hubspot v1", &v1_headers(flip(&v1, 0)), &v1_headers(flip(&v1, v1.len() - 1)), hubspot);

    let v3 = sign::hubspot_v3(SECRET, "POST", URL, body, now);
    let v3_headers = |s: String| headers(&[("x-hubspot-signature-v3", s), ("x-hubspot-request-timestamp", now.to_string())]);
    // the last base64 character that carries only signature bits (before the one with padding
    // bits and the `=`), so the forgery still decodes
    independent &= compare("hubspot v3", &v3_headers(flip(&v3, 0)), &v3_headers(flip(&v3, v3.len() - 3)), hubspot);

    let t = now / 1000;
    let stripe_signature = sign::stripe_v1(SECRET, body, t);
    let stripe_headers = |s: String| headers(&[("stripe-signature", format!("t={t},v1={s}"))]);
    let stripe = |h: &HeaderMap| signature::verify_stripe(body, h, &secrets, t).is_ok();
    let (early, late) = (flip(&stripe_signature, 0), flip(&stripe_signature, stripe_signature.len() - 1));
    independent &= compare("stripe v1", &stripe_headers(early), &stripe_headers(late), stripe);

    // the control: a comparison that stops at the first wrong character must be caught
    let expected = sign::hubspot_v1(SECRET, body);
    let naive = |h: &HeaderMap| {
        let given = h.get("x-hubspot-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
        given.len() == expected.len() && given.bytes().zip(expected.bytes()).all(|(x, y)| std::hint::black_box(x == y))
    };
    let caught = !compare("control", &v1_headers(flip(&v1, 0)), &v1_headers(flip(&v1, v1.len() - 1)), naive);
    println!(
        "control (early-exit compare): {}",
        if caught { "dependence detected, as it must be" } else { "NOT detected: the check lacks power here" }
    );

    if independent {
        println!("refusal time does not depend on how much of a forgery matches (p > 0.01 for each scheme)");
        Ok(Exit::Ok)
    } else {
        Err(CliError::failed("a verifier's refusal time depends on the matching prefix (p ≤ 0.01); rerun on an idle machine to confirm"))
    }
}
