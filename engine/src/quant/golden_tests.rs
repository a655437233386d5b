//! Golden bytes: ggml's reference quantizers (`quantize_row_*_ref`, transcribed from
//! ggml-quants.c and compiled with gcc 12 `-O2 -ffp-contract=off`) run on the input of
//! [`golden_input`]; our quantizers must produce the same bytes. With FMA contraction
//! (`-march=native`) gcc's Q5_K output differs in a few bytes, as its float rounding differs;
//! all the other types agree either way.
//!
//! Q5_0 and Q5_1 were produced twice, equal byte for byte: by that transcription of
//! `quantize_row_q5_{0,1}_ref`, and by the `gguf` Python package (gguf 0.19.0 from PyPI, numpy), whose
//! quantizers also reproduce the Q4_0/Q4_1/Q8_0 rows below:
//!
//! ```text
//! import numpy as np; from gguf.quants import quantize; from gguf.constants import GGMLQuantizationType as T
//! i = np.arange(512); t = ((i * 37) % 101 - 50).astype(np.float32) / np.float32(32)
//! v = t * t * t * np.float32(0.25) + t
//! x = np.where(i >= 256, v * np.float32(0.01) - np.float32(0.3), v).astype(np.float32)
//! for ty in (T.Q5_0, T.Q5_1): print(ty.name, quantize(x[:64], ty).tobytes().hex())
//! ```

use super::q8_act;
use super::quantize_row;
use crate::DType;

/// 512 values: a cubic of a scrambled ramp (exact in f32), the second half scaled and shifted
/// so the second K-quant super-block is all negative.
fn golden_input() -> Vec<f32> {
    (0..512)
        .map(|i| {
            let t = ((i * 37) % 101 - 50) as f32 / 32.0;
            let v = t * t * t * 0.25 + t;
            if i >= 256 { v * 0.01 - 0.3 } else { v }
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

const GOLDEN: [(&str, usize, &str); 10] = [
    (
        "q4_0",
        64,
        "0835d0579bf268ac2479ce468ae1579bf378dcb4751ea864fc9742da862fb9750da853eb",
    ),
    (
        "q4_1",
        64,
        "5e3508c1c0568ae267ac1478be3589d1579af3681735b0c08ae2579b1478bd3589d0569af267ac14",
    ),
    (
        "q5_0",
        64,
        "0831a4a52d6da0ad25e5cf4939f17d7c14b2be36f6d0dcb096b6b4a5eb2c41c7e82f93950d5f62da0b30b6c7",
    ),
    (
        "q5_1",
        64,
        "323108c1a4252d6d909d15d5cf4838e17c7b03a2ae26f6dfed30b0c069494b5b14d3be3827e06c6b03a09d25f5cf4938",
    ),
    (
        "q8_0",
        64,
        "122581eb2ba8fb45c60b66dd1d8ef032b2004ece1072e3239af53abb0558d5157fe9e5242aa2f944c10a66da1c85ed31\
         acfe4dc90f72e02292f339b60357d1147fe6289e",
    ),
    (
        "q8_1",
        64,
        "12254ab781eb2ba8fb45c60b66dd1d8ef032b2004ece1072e3239af53abb0558d5157fe9e52458b32aa2f944c10a66da\
         1c85ed31acfe4dc90f72e02292f339b60357d1147fe6289e",
    ),
    (
        "q4_K",
        512,
        "831d4329fff9f9fafcf9faffadcddbaca0267ac2478be4589d0569b1268ac3479cf468ae1679b1378bd3589cf569af26\
         479ce468ae0579b0378bd2589cf469af167ab1378bd3589df569af268ac1479c9df569af267ab2478bd4589d0569a026\
         7ac2478ce4689e1579b1368bc3579cf5167ab2378cd4589ef569a0277bb2488cd4599e066aa1277bc3488de5699f167a\
         6803491dfffdffffffffffffffedfffe8bd3589df569af267ac2478ce4589d0579b0268ac3479ce468ae167ab1378bd3\
         e569af167ab2378bd4589df569af267ac2478cd4589e0569a1377bc3488ce5695a91176bb3387dd5598f066aa2277bc4\
         488de55990166aa2377cc4488e065991c3489ce569ae167ab1378bd3589df569af267ac2478cd4589d0569a0268ac347",
    ),
    (
        "q5_K",
        512,
        "42192929fffdfcfcfffafdff9dddfd9d326c99364c9366c9b36c99364c9966cd9366c9336c99364c9966cdb366c9336c\
         403de5757f08b9a12c0bd3525ef6868019dab23e2cd4636ef7a7901aeac24f3d8f18c8b13c0be3605d06959029e9c24e\
         2ce4726e07b6a03afad25f3df5838f182af9d15f4cf4838e17c7b03b0ad2505cf5949e18d8c14d2be3616d06a6af29f9\
         2dd5646ff8a8911cfbc3403ee6757009b9a22d0cc4524ee786801adab23f1dd5a3014a1dfefefefffffffefffefffffe\
         9b62cdb366d9336c9932cc9b66cdb364d9326c9b22cd9366d9336c9932cc9b6217b7a13bfbd35f4df5848f18c8b13d0b\
         e4615e0696902ad9c24e2ce4726f07a7e7cf4c39f1707c14b4ae38f8d05d4af2818c15c5be3a18e0606b03939d27e6cf\
         e4626f07a7a12bfad35f3df5747f18b8b13cfbd3505ef6859019d9c24d1ce462a6902aeac24e2cf4737f17b7a13bfad3\
         5f4df5848f18c8b13c0be3615e069690",
    ),
    (
        "q6_K",
        512,
        "e10b0b2b8f616213b9b8b7f42c2c3db09d8cec44274709a3d2b10f7a6bbb3106fb277e626003bbb6a7f01b1d3aa07472\
         1cc4e8b80b532242ff8b9c4bd106d6189a9b7be0f6f627726f6f0eb7b9a9fe150337c07b8f1cc1e9b70e542044ff889d\
         ab311616f8a2b0b00e686a7a2ff5f5e5b16d7f0db3d9a80e442244e08a9d3bd018b1d66cb51b6d861b61c658b1da6cb6\
         2452b9249ef9678ee553892452f9249ed4a249d46e09a77e14a249d4ae09977ed963ba14628914aec967bed963b91462\
         807f8d7b8473848d7c6f7c73848d7c8d3291233152243112244113304223315224311330422331522431133542133042\
         233143243203253213214314315324320320421331522431032442133042233152240320321321421421031532032032\
         132153243213204213314224310324321320422331522431132442133042233152243203253213214214310324320320\
         421300000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
         000000000000000000000000000000000000848281828180838183828382858281834885",
    ),
    (
        "q8_K",
        512,
        "9b4da23c81eb2ba8fb45c60b66dd1d8ef032b2004ece1072e3239af53abb0558d5157fe929a5fa42c40a62db1b8aee30\
         affe4bcb0e6ee12196f337b80354d3147be727a1f83fc1085fd91985ec2dacfd48c90d6adf1f92f235b50251d01276e5\
         259ef63cbe065bd71781eb2ba8fb45c60b66dd1d8ef032b2004ece1072e3239af53abb0558d5157fe929a5fa42c40a62\
         db1b8aee30affe4bcb0e6ee12196f337b80354d3147be727a1f83fc1085fd91985ec2dacfd48c90d6adf1f92f235b502\
         51d01276e5259ef63cbe065bd71781eb2ba8fb45c60b66dd1d8ef032b2004ece1072e3239af53abb0558d5157fe929a5\
         fa42c40a62db1b8aee30affe4bcb0e6ee12196f312ffd7009bff5e002000f1ffbdff8fff52001300d9ff9c0066ff3700\
         0b00caff31cb273b8f858b91878c94898e838a90868b92888d81898e848b90878c93888d828a8f858b91878c94898e83\
         8a8f868b92888d81898e848a90868c93888d828a8f858b91878c94898e838a8f868b92878c95898e848a90868c92888d\
         82898f858b91878c93888d838a8f858b91878c94898e838a90868b92888d81898e848b90878c93888d828a8f858b9187\
         8c94898e838a8f868b92888d81898e848a90868c93888d828a8f858b91878c94898e838a8f868b92878c95898e848a90\
         868c92888d82898f858b91878c93888d838a8f858b91878c94898e838a90868b92888d81898e848b90878c93888d828a\
         8f858b91878c94898e838a8f868b92888d81898e848a9086b6f89ff8aff8abf8bcf8a5f8b0f8adf8a9f8a4f8b7f8b0f8\
         acf8a7f8b7f89ef8",
    ),
];

#[test]
fn quantizers_match_ggml_bytes() {
    let x = golden_input();
    for (name, n, want) in GOLDEN {
        let got = match name {
            "q8_1" | "q8_K" => {
                let weight = if name == "q8_1" {
                    DType::Q4_1
                } else {
                    DType::Q4K
                };
                let mut b = vec![0u8; q8_act::act_bytes(weight, n)];
                q8_act::quantize_act(weight, &x[..n], &mut b);
                b
            }
            _ => {
                let dtype = DType::parse(name).expect("a weight type");
                let mut b = vec![0u8; dtype.row_bytes(n).unwrap()];
                quantize_row(dtype, &x[..n], &mut b);
                b
            }
        };
        assert_eq!(hex(&got), want, "{name}");
    }
}
