//! Known-answer tests for the primitives the vault is built on, run through the same crates and
//! features the vault links: RFC 8439 §2.8.2, draft-irtf-cfrg-xchacha-03 §A.3.1, RFC 9106 §5.3.

use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

const PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const AAD: [u8; 12] = [
    0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
];

fn key() -> [u8; 32] {
    std::array::from_fn(|i| 0x80 + i as u8)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

#[test]
fn rfc8439_chacha20_poly1305() {
    let nonce = h("07000000 4041424344454647");
    let expected = h("d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6 3dbea45e8ca9671282fafb69da92728b
        1a71de0a9e060b2905d6a5b67ecd3b36 92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
        3ff4def08e4b7a9de576d26586cec64b 6116
        1ae10b594f09e26a7e902ecbd0600691");
    let cipher = ChaCha20Poly1305::new(&key().into());
    let sealed = cipher
        .encrypt(
            nonce.as_slice().into(),
            Payload {
                msg: PLAINTEXT,
                aad: &AAD,
            },
        )
        .unwrap();
    assert_eq!(sealed, expected);
    assert_eq!(
        cipher
            .decrypt(
                nonce.as_slice().into(),
                Payload {
                    msg: &sealed,
                    aad: &AAD
                }
            )
            .unwrap(),
        PLAINTEXT
    );
    let mut bad = sealed.clone();
    bad[0] ^= 0xaa;
    assert!(
        cipher
            .decrypt(
                nonce.as_slice().into(),
                Payload {
                    msg: &bad,
                    aad: &AAD
                }
            )
            .is_err()
    );
}

#[test]
fn xchacha20_poly1305_draft_a_3_1() {
    let nonce = h("404142434445464748494a4b4c4d4e4f5051525354555657");
    let expected = h("bd6d179d3e83d43b9576579493c0e939 572a1700252bfaccbed2902c21396cbb 731c7f1b0b4aa6440bf3a82f4eda7e39
        ae64c6708c54c216cb96b72e1213b452 2f8c9ba40db5d945b11b69b982c1bb9e 3f3fac2bc369488f76b2383565d3fff9
        21f9664c97637da9768812f615c68b13 b52e
        c0875924c1c7987947deafd8780acf49");
    let cipher = XChaCha20Poly1305::new(&key().into());
    let sealed = cipher
        .encrypt(
            nonce.as_slice().into(),
            Payload {
                msg: PLAINTEXT,
                aad: &AAD,
            },
        )
        .unwrap();
    assert_eq!(sealed, expected);
    let mut bad = sealed.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(
        cipher
            .decrypt(
                nonce.as_slice().into(),
                Payload {
                    msg: &bad,
                    aad: &AAD
                }
            )
            .is_err()
    );
}

#[test]
fn rfc9106_argon2id() {
    let params = ParamsBuilder::new()
        .m_cost(32)
        .t_cost(3)
        .p_cost(4)
        .data(AssociatedData::new(&[0x04; 12]).unwrap())
        .output_len(32)
        .build()
        .unwrap();
    let argon =
        Argon2::new_with_secret(&[0x03; 8], Algorithm::Argon2id, Version::V0x13, params).unwrap();
    let mut out = [0u8; 32];
    argon
        .hash_password_into(&[0x01; 32], &[0x02; 16], &mut out)
        .unwrap();
    assert_eq!(
        out.to_vec(),
        h("0d640df58d78766c08c037a34a8b53c9 d01ef0452d75b65eb52520e96b01e659")
    );
}
