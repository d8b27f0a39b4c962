//! Tests of the access-token format: round trips, attenuation, tampering and limits.

use super::*;
use crate::keys::SigningKey;
use proptest::prelude::*;

const AUD: &str = "steward.test";
const NOW: i64 = 1_800_000_000_000;
const TTL: i64 = 15 * 60 * 1000;

fn key(id: &str, byte: u8) -> SigningKey {
    SigningKey::from_seed(id, &Zeroizing::new([byte; SEED_LEN])).unwrap()
}

fn claims() -> Claims {
    Claims::new("tok_1", "idn_1", AUD, NOW, NOW + TTL)
}

fn setup() -> (SigningKey, VerifyingKeys, String) {
    let signing = key("k1", 7);
    let keys = VerifyingKeys::from_signing_key(&signing).unwrap();
    let token = mint(&signing, &claims()).unwrap();
    (signing, keys, token)
}

fn op(s: &str) -> OperationName {
    s.parse().unwrap()
}

/// Re-encodes a token after `edit` changes its decoded blocks and proof.
fn rebuild(
    token: &str,
    edit: impl FnOnce(&mut Vec<Block<'_>>, &mut Zeroizing<[u8; SEED_LEN]>),
) -> String {
    let bytes = decode_text(token).unwrap();
    let mut parsed = parse_binary(&bytes).unwrap();
    edit(&mut parsed.blocks, &mut parsed.proof);
    encode(&parsed.blocks, &parsed.proof).unwrap()
}

#[test]
fn minted_token_round_trips() {
    let (_, keys, token) = setup();
    assert!(token.starts_with("stwt_"));
    let verified = verify(&token, &keys, AUD, NOW).unwrap();
    assert_eq!(verified.claims, claims());
    assert_eq!(verified.key_id, "k1");
    assert_eq!(verified.effective_expires_ms, NOW + TTL);
    assert!(verified.restrictions.is_empty());
    assert!(!verified.delegated);
    assert_eq!(verified.token_hash, token_hash(&token));
    assert!(verified.allows(&op("github:issues.create")));
}

#[test]
fn minting_twice_gives_different_tokens() {
    let (signing, keys, first) = setup();
    let second = mint(&signing, &claims()).unwrap();
    assert_ne!(first, second, "the next key must be fresh per token");
    verify(&second, &keys, AUD, NOW).unwrap();
}

#[test]
fn audience_and_validity_period_are_enforced_with_skew() {
    let (_, keys, token) = setup();
    assert_eq!(
        verify(&token, &keys, "other", NOW),
        Err(TokenError::WrongAudience)
    );
    // Expiry: valid up to 30 s after `exp`, not at or beyond.
    assert!(verify(&token, &keys, AUD, NOW + TTL + CLOCK_SKEW_MS - 1).is_ok());
    assert_eq!(
        verify(&token, &keys, AUD, NOW + TTL + CLOCK_SKEW_MS),
        Err(TokenError::Expired)
    );
    // Issued in the future: tolerated for 30 s only.
    assert!(verify(&token, &keys, AUD, NOW - CLOCK_SKEW_MS).is_ok());
    assert_eq!(
        verify(&token, &keys, AUD, NOW - CLOCK_SKEW_MS - 1),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn unknown_retired_and_wrong_keys_are_rejected() {
    let (_, keys, token) = setup();
    let empty = VerifyingKeys::new();
    assert!(
        matches!(verify(&token, &empty, AUD, NOW), Err(TokenError::UnknownKeyId(id)) if id == "k1")
    );

    let mut retired = keys.clone();
    retired.retire_at("k1", Some(NOW));
    assert!(matches!(
        verify(&token, &retired, AUD, NOW),
        Err(TokenError::KeyRetired(_))
    ));

    // Same key id, different key: a forgery.
    let impostor = VerifyingKeys::from_signing_key(&key("k1", 8)).unwrap();
    assert_eq!(
        verify(&token, &impostor, AUD, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn rotation_overlap_verifies_old_and_new_tokens() {
    let old = key("k-old", 1);
    let new = key("k-new", 2);
    let old_token = mint(&old, &claims()).unwrap();
    let new_token = mint(&new, &claims()).unwrap();
    let mut keys = VerifyingKeys::from_signing_key(&new).unwrap();
    keys.insert("k-old", &old.public_key(), Some(NOW + TTL))
        .unwrap();
    assert!(verify(&old_token, &keys, AUD, NOW).is_ok());
    assert!(verify(&new_token, &keys, AUD, NOW).is_ok());
    assert!(matches!(
        verify(&old_token, &keys, AUD, NOW + TTL),
        Err(TokenError::KeyRetired(_))
    ));
}

#[test]
fn attenuation_narrows_and_marks_delegated() {
    let (_, keys, token) = setup();
    let restriction = Restriction::default()
        .services(["github", "slack"])
        .expires_at_ms(NOW + 60_000);
    let narrowed = attenuate(&token, &restriction).unwrap();
    let again = attenuate(
        &narrowed,
        &Restriction::default()
            .operations_from_strs(["github:issues.read", "slack:chat.post"])
            .unwrap()
            .expires_at_ms(NOW + TTL * 2),
    )
    .unwrap();
    let verified = verify(&again, &keys, AUD, NOW).unwrap();
    assert!(verified.delegated);
    assert_eq!(verified.restrictions.len(), 2);
    assert_eq!(verified.restrictions[0], restriction);
    // A later, longer expiry cannot extend the earlier one.
    assert_eq!(verified.effective_expires_ms, NOW + 60_000);
    assert!(verified.allows(&op("github:issues.read")));
    assert!(verified.allows(&op("slack:chat.post")));
    assert!(!verified.allows(&op("github:issues.create")));
    assert!(!verified.allows(&op("jira:issue.read")));
    assert_eq!(
        verify(&again, &keys, AUD, NOW + 60_000 + CLOCK_SKEW_MS),
        Err(TokenError::Expired)
    );
    // The parent token is untouched.
    assert!(
        verify(&token, &keys, AUD, NOW)
            .unwrap()
            .allows(&op("jira:issue.read"))
    );
}

#[test]
fn claims_scope_and_actor_chain_apply() {
    let signing = key("k1", 7);
    let keys = VerifyingKeys::from_signing_key(&signing).unwrap();
    let mut delegated = claims();
    delegated.actor_chain = vec!["idn_agent".into(), "idn_orchestrator".into()];
    delegated.scope = Restriction::default().services(["github"]);
    let token = mint(&signing, &delegated).unwrap();
    let verified = verify(&token, &keys, AUD, NOW).unwrap();
    assert_eq!(verified.claims, delegated);
    assert!(verified.delegated);
    assert!(verified.allows(&op("github:x")));
    assert!(!verified.allows(&op("slack:x")));
    assert!(verified.is_restricted());
}

#[test]
fn blocks_cannot_be_removed() {
    let (_, keys, token) = setup();
    let narrowed = attenuate(&token, &Restriction::default().services(["github"])).unwrap();
    // Dropping the restriction block while keeping the (newer) proof fails.
    let truncated = rebuild(&narrowed, |blocks, _| {
        blocks.truncate(1);
    });
    assert_eq!(
        verify(&truncated, &keys, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        attenuate(&truncated, &Restriction::default()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn blocks_cannot_be_reordered_or_spliced() {
    let (signing, keys, token) = setup();
    let a = attenuate(&token, &Restriction::default().services(["github"])).unwrap();
    let ab = attenuate(&a, &Restriction::default().services(["github", "slack"])).unwrap();
    let swapped = rebuild(&ab, |blocks, _| blocks.swap(1, 2));
    assert_eq!(
        verify(&swapped, &keys, AUD, NOW),
        Err(TokenError::BadSignature)
    );

    // Splice block 1 of another token (same identity, same key) onto this one.
    let other = mint(&signing, &claims()).unwrap();
    let other_narrowed = attenuate(&other, &Restriction::default().services(["slack"])).unwrap();
    let other_bytes = decode_text(&other_narrowed).unwrap();
    let other_parsed = parse_binary(&other_bytes).unwrap();
    let foreign = other_parsed.blocks[1];
    let foreign_proof = other_parsed.proof.clone();
    let own_bytes = decode_text(&a).unwrap();
    let mut own = parse_binary(&own_bytes).unwrap();
    own.blocks[1] = foreign;
    let spliced = encode(&own.blocks, &foreign_proof).unwrap();
    assert_eq!(
        verify(&spliced, &keys, AUD, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn unknown_restriction_fields_fail_closed() {
    let (_, keys, token) = setup();
    // A correctly signed block whose payload carries a field this version does not know.
    let bytes = decode_text(&token).unwrap();
    let parsed = parse_binary(&bytes).unwrap();
    let last = parsed.blocks[0];
    let proof_pair = Ed25519KeyPair::from_seed_unchecked(&parsed.proof[..]).unwrap();
    let payload = br#"{"svc":["github"],"ip":"10.0.0.0/8"}"#;
    let (next_seed, next_key) = fresh_next_key().unwrap();
    let message = signed_message(1, Some(&last.signature), payload, &next_key).unwrap();
    let signature = sign_with(&proof_pair, &message).unwrap();
    let blocks = vec![
        last,
        Block {
            payload,
            next_key,
            signature,
        },
    ];
    let crafted = encode(&blocks, &next_seed).unwrap();
    assert!(matches!(
        verify(&crafted, &keys, AUD, NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn size_and_block_limits_are_enforced() {
    let (_, keys, token) = setup();
    let huge = format!("stwt_{}", "A".repeat(MAX_TOKEN_LEN));
    assert!(matches!(
        verify(&huge, &keys, AUD, NOW),
        Err(TokenError::TooLarge { .. })
    ));
    assert!(matches!(
        attenuate(&huge, &Restriction::default()),
        Err(TokenError::TooLarge { .. })
    ));

    let mut current = token;
    for _ in 1..MAX_BLOCKS {
        current = attenuate(&current, &Restriction::default().services(["github"])).unwrap();
    }
    let verified = verify(&current, &keys, AUD, NOW).unwrap();
    assert_eq!(verified.restrictions.len(), MAX_BLOCKS - 1);
    assert!(matches!(
        attenuate(&current, &Restriction::default()),
        Err(TokenError::TooManyBlocks { .. })
    ));

    // A header announcing 17 blocks is rejected before the blocks are read.
    let crafted = format!("stwt_{}", URL_SAFE_NO_PAD.encode([1u8, 17]));
    assert!(matches!(
        verify(&crafted, &keys, AUD, NOW),
        Err(TokenError::TooManyBlocks { count: 17, .. })
    ));
}

#[test]
fn malformed_inputs_are_rejected() {
    let (_, keys, token) = setup();
    let cases = [
        String::new(),
        "stwt_".to_owned(),
        token.replacen("stwt_", "stwx_", 1),
        format!("{token}="),
        format!("{token} "),
        format!("stwt_{}", URL_SAFE_NO_PAD.encode([2u8, 1])),
        format!("stwt_{}", URL_SAFE_NO_PAD.encode([1u8, 0])),
    ];
    for case in &cases {
        assert!(
            matches!(verify(case, &keys, AUD, NOW), Err(TokenError::Malformed(_))),
            "{case}"
        );
    }
    let trailing = {
        let mut bytes = decode_text(&token).unwrap().to_vec();
        bytes.push(0);
        format!("stwt_{}", URL_SAFE_NO_PAD.encode(bytes))
    };
    assert_eq!(
        verify(&trailing, &keys, AUD, NOW),
        Err(TokenError::Malformed("trailing bytes"))
    );
}

#[test]
fn mint_and_attenuate_validate_input() {
    let signing = key("k1", 7);
    let mut bad = claims();
    bad.expires_at_ms = bad.issued_at_ms;
    assert!(matches!(
        mint(&signing, &bad),
        Err(TokenError::InvalidClaims(_))
    ));
    let (_, _, token) = setup();
    assert!(matches!(
        attenuate(&token, &Restriction::default().services([""])),
        Err(TokenError::InvalidRestriction(_))
    ));
}

#[test]
fn decode_unverified_shows_contents() {
    let (_, _, token) = setup();
    let narrowed = attenuate(&token, &Restriction::default().services(["github"])).unwrap();
    let (shown, restrictions) = decode_unverified(&narrowed).unwrap();
    assert_eq!(shown, claims());
    assert_eq!(
        restrictions,
        vec![Restriction::default().services(["github"])]
    );
}

fn restriction_strategy() -> impl Strategy<Value = Restriction> {
    let services = prop::option::of(prop::collection::btree_set(
        prop::sample::select(vec!["a", "b", "c"]),
        0..3,
    ));
    let operations = prop::option::of(prop::collection::btree_set(
        (
            prop::sample::select(vec!["a", "b", "c"]),
            prop::sample::select(vec!["x", "y", "z"]),
        ),
        0..5,
    ));
    let expiry = prop::option::of(NOW + 1..NOW + 2 * TTL);
    (services, operations, expiry).prop_map(|(services, operations, expires_at_ms)| Restriction {
        services: services.map(|s| s.into_iter().map(str::to_owned).collect()),
        operations: operations.map(|ops| {
            ops.into_iter()
                .map(|(s, o)| OperationName::new(s, o))
                .collect()
        }),
        expires_at_ms,
    })
}

fn universe() -> Vec<OperationName> {
    let mut all = Vec::new();
    for service in ["a", "b", "c", "d"] {
        for operation in ["x", "y", "z", "w"] {
            all.push(OperationName::new(service, operation));
        }
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn attenuation_only_narrows(chain in prop::collection::vec(restriction_strategy(), 1..4)) {
        let (_, keys, token) = setup();
        let mut previous = verify(&token, &keys, AUD, NOW).unwrap();
        let mut current = token;
        for restriction in &chain {
            current = attenuate(&current, restriction).unwrap();
            let narrowed = verify(&current, &keys, AUD, NOW).unwrap();
            prop_assert!(narrowed.effective_expires_ms <= previous.effective_expires_ms);
            prop_assert!(narrowed.delegated);
            for op in universe() {
                if narrowed.allows(&op) {
                    prop_assert!(previous.allows(&op), "{op} widened");
                    prop_assert!(restriction.allows(&op), "{op} allowed past its restriction");
                }
            }
            prop_assert_eq!(narrowed.claims.token_id.as_str(), "tok_1");
            previous = narrowed;
        }
    }

    #[test]
    fn any_decoded_byte_flip_fails(index in any::<prop::sample::Index>(), mask in 1u8..=255, attenuated in any::<bool>()) {
        let (_, keys, token) = setup();
        let token = if attenuated {
            attenuate(&token, &Restriction::default().services(["a"])).unwrap()
        } else {
            token
        };
        let mut bytes = decode_text(&token).unwrap().to_vec();
        let at = index.index(bytes.len());
        bytes[at] ^= mask;
        let flipped = format!("stwt_{}", URL_SAFE_NO_PAD.encode(&bytes));
        prop_assert!(verify(&flipped, &keys, AUD, NOW).is_err());
    }

    #[test]
    fn any_text_byte_flip_fails(index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let (_, keys, token) = setup();
        let mut bytes = token.into_bytes();
        let at = index.index(bytes.len());
        bytes[at] ^= mask;
        if let Ok(flipped) = String::from_utf8(bytes) {
            prop_assert!(verify(&flipped, &keys, AUD, NOW).is_err());
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,200}") {
        let (_, keys, _) = setup();
        prop_assert!(verify(&s, &keys, AUD, NOW).is_err());
        let _ = attenuate(&s, &Restriction::default());
        let _ = decode_unverified(&s);
    }

    #[test]
    fn arbitrary_binary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..600), version_one in any::<bool>()) {
        let (_, keys, _) = setup();
        let mut body = body;
        if version_one && body.len() >= 2 {
            body[0] = 1;
            body[1] %= 4;
        }
        let text = format!("stwt_{}", URL_SAFE_NO_PAD.encode(&body));
        prop_assert!(verify(&text, &keys, AUD, NOW).is_err());
        let _ = attenuate(&text, &Restriction::default());
        let _ = decode_unverified(&text);
    }
}

/// Mints with a chosen next-key seed, to simulate a next key shared by two tokens.
fn mint_with_next_seed(
    signing: &SigningKey,
    claims: &Claims,
    next_seed: &Zeroizing<[u8; SEED_LEN]>,
) -> String {
    let payload = serde_json::to_vec(&ClaimsWire::new(claims, signing.key_id())).unwrap();
    let pair = Ed25519KeyPair::from_seed_unchecked(&next_seed[..]).unwrap();
    let next_key: [u8; PUBLIC_KEY_LEN] = pair.public_key().as_ref().try_into().unwrap();
    let signature = signing
        .sign(&signed_message(0, None, &payload, &next_key).unwrap())
        .unwrap();
    encode(
        &[Block {
            payload: &payload,
            next_key,
            signature,
        }],
        next_seed,
    )
    .unwrap()
}

#[test]
fn signatures_bind_the_previous_block_even_if_a_next_key_repeats() {
    let (signing, keys, _) = setup();
    let shared = Zeroizing::new([9u8; SEED_LEN]);
    let mut other_claims = claims();
    other_claims.token_id = "tok_2".into();
    other_claims.identity_id = "idn_2".into();
    let a = mint_with_next_seed(&signing, &claims(), &shared);
    let b = mint_with_next_seed(&signing, &other_claims, &shared);
    let a_narrowed = attenuate(&a, &Restriction::default().services(["github"])).unwrap();
    verify(&a_narrowed, &keys, AUD, NOW).unwrap();

    // Move A's restriction block (and proof) onto B's block 0, which names the same next key.
    let a_bytes = decode_text(&a_narrowed).unwrap();
    let a_parsed = parse_binary(&a_bytes).unwrap();
    let b_bytes = decode_text(&b).unwrap();
    let b_parsed = parse_binary(&b_bytes).unwrap();
    let spliced = encode(&[b_parsed.blocks[0], a_parsed.blocks[1]], &a_parsed.proof).unwrap();
    assert_eq!(
        verify(&spliced, &keys, AUD, NOW),
        Err(TokenError::BadSignature)
    );
}
