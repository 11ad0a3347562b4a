"""Chunked source sets: Eq. 7 (sublayers) and Eq. 11 (final), on worked examples."""

from __future__ import annotations

import pytest

from dar.routing.chunks import dead_after, final_sources, sublayer_sources, valid_chunk_sizes

# Depth 4 -> L = 8 sublayers. Sources v_0 (input embedding) .. v_8.
# Chunk n (1-based) holds sublayers (n-1)S+1 .. nS; summaries c_0 = v_0, c_n = v_{nS}.
WORKED = {
    # S = 4: chunks {1,2,3,4} and {5,6,7,8}; c_0 = v_0, c_1 = v_4.
    4: {
        1: (0,),
        2: (0, 1),
        3: (0, 1, 2),
        4: (0, 1, 2, 3),
        5: (0, 4),
        6: (0, 4, 5),
        7: (0, 4, 5, 6),
        8: (0, 4, 5, 6, 7),
        "final": (0, 4, 5, 6, 7, 8),  # c_0, c_1 + raw last chunk v_5..v_8
    },
    # S = 2: chunks {1,2},{3,4},{5,6},{7,8}; c = v_0, v_2, v_4, v_6.
    2: {
        1: (0,),
        2: (0, 1),
        3: (0, 2),
        4: (0, 2, 3),
        5: (0, 2, 4),
        6: (0, 2, 4, 5),
        7: (0, 2, 4, 6),
        8: (0, 2, 4, 6, 7),
        "final": (0, 2, 4, 6, 7, 8),
    },
    # S = 8: one chunk; every sublayer sees v_0 and its chunk so far.
    8: {
        1: (0,),
        2: (0, 1),
        5: (0, 1, 2, 3, 4),
        8: (0, 1, 2, 3, 4, 5, 6, 7),
        "final": (0, 1, 2, 3, 4, 5, 6, 7, 8),
    },
}


@pytest.mark.parametrize("S", sorted(WORKED))
def test_worked_example_depth4(S):
    for l, expected in WORKED[S].items():
        got = final_sources(S, 8) if l == "final" else sublayer_sources(l, S, 8)
        assert got == expected, f"S={S} l={l}: {got} != {expected}"


def test_dense_S1_is_all_previous_sources():
    L = 8
    for l in range(1, L + 1):
        assert sublayer_sources(l, 1, L) == tuple(range(l))
    assert final_sources(1, L) == tuple(range(L + 1))


def test_sitxl2_dense_final_has_57_sources_and_bound_holds():
    L = 56
    assert len(final_sources(1, L)) == 57  # App. E: N = 57 at the SiT-XL/2 working point
    for S in valid_chunk_sizes(L):
        N = L // S
        assert len(final_sources(S, L)) == N + S
        assert max(len(sublayer_sources(l, S, L)) for l in range(1, L + 1)) <= S + N  # Sec. 4.2 bound


def test_dead_sources_are_never_read_again():
    for L, S in [(8, 2), (8, 4), (56, 4), (12, 3)]:
        reads = {l: set(sublayer_sources(l, S, L)) for l in range(1, L + 1)}
        reads["final"] = set(final_sources(S, L))
        for l in range(1, L + 1):
            for i in dead_after(l, S, L):
                later = [k for k in reads if k == "final" or k > l]
                assert all(i not in reads[k] for k in later), (L, S, l, i)


@pytest.mark.parametrize("S", [0, 3, 5, 9])
def test_chunk_size_must_divide_L(S):
    with pytest.raises(ValueError, match=r"does not divide the L=8 sublayers.*Valid chunk sizes for this depth: \[1, 2, 4, 8\]"):
        sublayer_sources(1, S, 8)
