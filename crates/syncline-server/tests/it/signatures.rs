use axum::http::HeaderMap;
use proptest::prelude::*;
use syncline_server::signature::{Signed, sign, v3_uri, verify_hubspot, verify_stripe};
use syncline_server::{HubSpotVersion, Secret, SignatureError};

const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
const ALL: [HubSpotVersion; 3] = [HubSpotVersion::V1, HubSpotVersion::V2, HubSpotVersion::V3];
const DOCS_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
const SDK_BODY: &str = "{'example_field':'example_value'}";
const URL: &str = "https://www.example.com/webhook_uri";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    map
}

fn secrets(values: &[&str]) -> Vec<Secret> {
    values.iter().map(|s| Secret::new(*s)).collect()
}

fn hubspot(method: &str, url: &str, body: &str, h: &[(&str, &str)], now_ms: i64) -> Result<HubSpotVersion, SignatureError> {
    verify_hubspot(Signed { method, url, body: body.as_bytes() }, &headers(h), &secrets(&[SECRET]), &ALL, now_ms)
}

#[test]
fn the_official_hubspot_vectors_pass() {
    let v1 = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de";
    assert_eq!(sign::hubspot_v1(SECRET, DOCS_BODY.as_bytes()), v1);
    assert_eq!(hubspot("POST", URL, DOCS_BODY, &[("x-hubspot-signature", v1)], 0), Ok(HubSpotVersion::V1));

    let v2 = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e";
    let v2_headers = [("x-hubspot-signature", v2), ("x-hubspot-signature-version", "v2")];
    assert_eq!(hubspot("GET", URL, "", &v2_headers, 0), Ok(HubSpotVersion::V2));

    let sdk_v1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750";
    assert_eq!(
        hubspot("POST", URL, SDK_BODY, &[("x-hubspot-signature", sdk_v1), ("x-hubspot-signature-version", "v1")], 0),
        Ok(HubSpotVersion::V1)
    );
    let sdk_v2 = "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383";
    assert_eq!(
        hubspot("POST", URL, SDK_BODY, &[("x-hubspot-signature", sdk_v2), ("x-hubspot-signature-version", "v2")], 0),
        Ok(HubSpotVersion::V2)
    );

    let at = 1_693_657_560_000;
    let v3 = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    assert_eq!(sign::hubspot_v3(SECRET, "POST", URL, SDK_BODY.as_bytes(), at), v3);
    let v3_headers = [("x-hubspot-signature-v3", v3), ("x-hubspot-request-timestamp", "1693657560000")];
    assert_eq!(hubspot("POST", URL, SDK_BODY, &v3_headers, at + 1000), Ok(HubSpotVersion::V3));
}

#[test]
fn the_stripe_vector_passes() {
    let body = br#"{"id":"evt_test_webhook","object":"event","type":"product.updated"}"#;
    let v1 = "e45228dadf794851935bb75234fe0a5a2411eb632c9051688151255103a53ec0";
    assert_eq!(sign::stripe_v1("whsec_test_secret", body, 1_700_000_000), v1);
    let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={v1}"))]);
    assert_eq!(verify_stripe(body, &h, &secrets(&["whsec_test_secret"]), 1_700_000_010), Ok(()));
}

#[test]
fn timestamps_pass_up_to_300_seconds_either_way() {
    let at = 1_700_000_000_000i64;
    let v3 = sign::hubspot_v3(SECRET, "POST", URL, b"[]", at);
    let h = [("x-hubspot-signature-v3", v3.as_str()), ("x-hubspot-request-timestamp", "1700000000000")];
    for (offset, passes) in [(-301, false), (-300, true), (0, true), (300, true), (301, false)] {
        let result = hubspot("POST", URL, "[]", &h, at + offset * 1000);
        assert_eq!(result.is_ok(), passes, "HubSpot v3 at {offset:+} s: {result:?}");
        if !passes {
            assert!(matches!(result, Err(SignatureError::OutsideTolerance(_))));
        }
    }
    for bad in ["soon", "-1", "", "1e12"] {
        let h = [("x-hubspot-signature-v3", v3.as_str()), ("x-hubspot-request-timestamp", bad)];
        assert!(hubspot("POST", URL, "[]", &h, at).is_err(), "timestamp {bad:?}");
    }

    let body = b"{}";
    let t = 1_700_000_000;
    let h = headers(&[("stripe-signature", &format!("t={t},v1={}", sign::stripe_v1("whsec_x", body, t)))]);
    for (offset, passes) in [(-301, false), (-300, true), (300, true), (301, false)] {
        // now = t - offset: a negative offset means the timestamp is in the future
        let result = verify_stripe(body, &h, &secrets(&["whsec_x"]), t - offset);
        assert_eq!(result.is_ok(), passes, "Stripe at {offset:+} s: {result:?}");
    }
    for bad in ["t=abc,v1=00", "t=-5,v1=00", "v1=00", "t=1700000000", "garbage", ""] {
        assert!(verify_stripe(body, &headers(&[("stripe-signature", bad)]), &secrets(&["whsec_x"]), t).is_err(), "{bad}");
    }
}

#[test]
fn rotation_accepts_either_secret_and_any_v1_in_any_order() {
    let body = b"{\"id\":\"evt_1\"}";
    let t = 1_700_000_000;
    let old = sign::stripe_v1("whsec_old", body, t);
    let new = sign::stripe_v1("whsec_new", body, t);
    for header in [format!("t={t},v1={old},v1={new}"), format!("t={t},v1={new},v1={old}")] {
        let h = headers(&[("stripe-signature", &header)]);
        assert_eq!(verify_stripe(body, &h, &secrets(&["whsec_new"]), t), Ok(()), "{header}");
        assert_eq!(verify_stripe(body, &h, &secrets(&["whsec_old"]), t), Ok(()), "{header}");
    }
    let v0_only = headers(&[("stripe-signature", &format!("t={t},v0={new}"))]);
    assert!(verify_stripe(body, &v0_only, &secrets(&["whsec_new"]), t).is_err(), "v0 cannot stand in for v1");

    let v1 = sign::hubspot_v1("second", body);
    let both = secrets(&["first", "second"]);
    let h = headers(&[("x-hubspot-signature", &v1)]);
    assert!(verify_hubspot(Signed { method: "POST", url: URL, body }, &h, &both, &ALL, 0).is_ok());
    assert!(verify_hubspot(Signed { method: "POST", url: URL, body }, &h, &both[..1], &ALL, 0).is_err());
}

#[test]
fn the_v3_uri_decodes_only_the_listed_escapes() {
    assert_eq!(
        v3_uri("https://example.com/hook%3Fx?a=%3A%2F%40%21%24%27%28%29%2A%2C%3B&b=%20%26%3D%25"),
        "https://example.com/hook?x?a=:/@!$'()*,;&b=%20%26%3D%25"
    );
    assert_eq!(v3_uri("https://e.com/%"), "https://e.com/%");
    assert_eq!(v3_uri("https://e.com/%2"), "https://e.com/%2");
    assert_eq!(v3_uri("https://e.com/%3a"), "https://e.com/:", "hex digits in either case");
}

#[test]
fn versions_a_source_does_not_take_are_refused() {
    let v1 = sign::hubspot_v1(SECRET, b"[]");
    let h = headers(&[("x-hubspot-signature", &v1)]);
    let only_v3 = [HubSpotVersion::V3];
    let result = verify_hubspot(Signed { method: "POST", url: URL, body: b"[]" }, &h, &secrets(&[SECRET]), &only_v3, 0);
    assert!(matches!(result, Err(SignatureError::Version(_))), "{result:?}");
    let unknown = hubspot("POST", URL, "[]", &[("x-hubspot-signature", &v1), ("x-hubspot-signature-version", "v9")], 0);
    assert!(matches!(unknown, Err(SignatureError::Version(_))), "{unknown:?}");
    assert_eq!(hubspot("POST", URL, "[]", &[], 0), Err(SignatureError::Missing("X-HubSpot-Signature")));
}

#[test]
fn error_messages_never_carry_the_secret_or_the_expected_value() {
    let canary = "canary-secret-9f1b";
    let expected = sign::hubspot_v1(canary, b"[]");
    let forged = headers(&[("x-hubspot-signature", &"0".repeat(64))]);
    let error = verify_hubspot(Signed { method: "POST", url: URL, body: b"[]" }, &forged, &secrets(&[canary]), &ALL, 0).unwrap_err();
    let text = format!("{error} {error:?} {:?}", Secret::new(canary));
    assert!(!text.contains(canary) && !text.contains(&expected), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever the body and secret, a signature verifies, and flipping any one bit of the body
    /// or the signature makes it fail (all three HubSpot versions and Stripe).
    #[test]
    fn signatures_round_trip_and_any_flipped_bit_fails(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        secret in "[ -~]{1,64}",
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let now_ms = 1_700_000_000_000i64;
        let keys = secrets(&[&secret]);
        let v1 = sign::hubspot_v1(&secret, &body);
        let v3 = sign::hubspot_v3(&secret, "POST", URL, &body, now_ms);
        let stripe = format!("t={},v1={}", now_ms / 1000, sign::stripe_v1(&secret, &body, now_ms / 1000));
        let h1 = headers(&[("x-hubspot-signature", &v1)]);
        let h3 = headers(&[("x-hubspot-signature-v3", &v3), ("x-hubspot-request-timestamp", &now_ms.to_string())]);
        let hs = headers(&[("stripe-signature", &stripe)]);
        let ok = |b: &[u8]| {
            let signed = Signed { method: "POST", url: URL, body: b };
            [
                verify_hubspot(signed, &h1, &keys, &ALL, now_ms).is_ok(),
                verify_hubspot(signed, &h3, &keys, &ALL, now_ms).is_ok(),
                verify_stripe(b, &hs, &keys, now_ms / 1000).is_ok(),
            ]
        };
        prop_assert_eq!(ok(&body), [true, true, true]);
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[flip.index(body.len())] ^= 1 << bit;
            prop_assert_eq!(ok(&changed), [false, false, false]);
        }
        let mut bad_v1 = hex::decode(&v1).unwrap();
        let at = flip.index(bad_v1.len());
        bad_v1[at] ^= 1 << bit;
        let forged = headers(&[("x-hubspot-signature", &hex::encode(&bad_v1))]);
        let signed = Signed { method: "POST", url: URL, body: &body };
        prop_assert!(verify_hubspot(signed, &forged, &keys, &ALL, now_ms).is_err());
        let truncated = headers(&[("x-hubspot-signature", &v1[..v1.len() - 2])]);
        prop_assert!(verify_hubspot(signed, &truncated, &keys, &ALL, now_ms).is_err());
    }

    /// Arbitrary header values and bodies never panic the verifiers or the payload parsers.
    #[test]
    fn arbitrary_input_never_panics(
        value in "[ -~]{0,200}",
        timestamp in "[ -~]{0,30}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let keys = secrets(&["s"]);
        let signed = Signed { method: "POST", url: URL, body: &body };
        for h in [
            vec![("x-hubspot-signature", value.as_str())],
            vec![("x-hubspot-signature", value.as_str()), ("x-hubspot-signature-version", timestamp.as_str())],
            vec![("x-hubspot-signature-v3", value.as_str()), ("x-hubspot-request-timestamp", timestamp.as_str())],
        ] {
            let _ = verify_hubspot(signed, &headers(&h), &keys, &ALL, 0);
        }
        let _ = verify_stripe(&body, &headers(&[("stripe-signature", value.as_str())]), &keys, 0);
        let _ = syncline_server::events::hubspot("h", &body);
        let _ = syncline_server::events::stripe("s", &body);
        let _ = v3_uri(&value);
    }
}
