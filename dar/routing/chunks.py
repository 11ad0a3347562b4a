"""Source sets of chunked DAR aggregation: paper Eq. 7 (per sublayer) and Eq. 11 (final).

Indexing used throughout (the paper's indices are ambiguous by one; this is
the reading under which the dense final aggregator of SiT-XL/2 sees 57
sources, App. E, and the model has 57 aggregators, Table 1's 750.9M):

* Sources are v_0 .. v_L. v_0 = h_0 is the input embedding; v_l (l = 1..L) is
  the output of sublayer l, L = 2 x depth (attention and MLP sublayers count
  separately). Sublayer l consumes h_l, an aggregate over v_0 .. v_{l-1}.
* Chunk n (1-based, n = 1..N, N = L / S) holds sublayers (n-1)S+1 .. nS.
* Chunk summaries: c_0 = v_0 (the input embedding is its own summary) and
  c_n = v_{nS}, the output of chunk n's last sublayer.
* Eq. 7: sublayer l in chunk n reads {c_0, .., c_{n-1}} U {v_{(n-1)S+1}, .., v_{l-1}}:
  n summaries plus at most S-1 intra-chunk outputs, so |S_l| <= N + S - 1.
* Eq. 11 (dedicated final aggregator): {c_0, .., c_{N-1}} U {v_{(N-1)S+1}, .., v_L},
  N + S sources. With S = 1 this is all of v_0 .. v_L (57 for SiT-XL/2), and
  each sublayer reads every earlier source: the dense variant.

The chunk size must divide L; other values are rejected (no partial chunks).
"""

from __future__ import annotations

from functools import cache


def valid_chunk_sizes(num_sublayers: int) -> list[int]:
    return [s for s in range(1, num_sublayers + 1) if num_sublayers % s == 0]


def check_chunk_size(chunk: int, num_sublayers: int) -> None:
    if chunk < 1 or num_sublayers % chunk != 0:
        raise ValueError(
            f"chunk size S={chunk} does not divide the L={num_sublayers} sublayers "
            f"(depth {num_sublayers // 2}); partial chunks are not defined. "
            f"Valid chunk sizes for this depth: {valid_chunk_sizes(num_sublayers)}"
        )


@cache
def sublayer_sources(l: int, chunk: int, num_sublayers: int) -> tuple[int, ...]:
    """Indices i of the sources v_i that sublayer l (1-based) aggregates, Eq. 7."""
    check_chunk_size(chunk, num_sublayers)
    if not 1 <= l <= num_sublayers:
        raise ValueError(f"sublayer index l={l} outside 1..{num_sublayers}")
    n = (l - 1) // chunk + 1  # chunk of sublayer l, 1-based
    summaries = [j * chunk for j in range(n)]  # c_0 .. c_{n-1}
    intra = list(range((n - 1) * chunk + 1, l))  # v_{(n-1)S+1} .. v_{l-1}
    return tuple(summaries + intra)


@cache
def final_sources(chunk: int, num_sublayers: int) -> tuple[int, ...]:
    """Indices aggregated by the dedicated final aggregator, Eq. 11."""
    check_chunk_size(chunk, num_sublayers)
    N = num_sublayers // chunk
    summaries = [j * chunk for j in range(N)]  # c_0 .. c_{N-1}
    last_chunk = list(range((N - 1) * chunk + 1, num_sublayers + 1))  # v_{(N-1)S+1} .. v_L
    return tuple(summaries + last_chunk)


def is_chunk_end(l: int, chunk: int) -> bool:
    """True when v_l is a chunk summary (the last output of its chunk)."""
    return l % chunk == 0


def dead_after(l: int, chunk: int, num_sublayers: int) -> tuple[int, ...]:
    """Sources no later aggregator reads once v_l is written.

    When chunk n closes (l = nS < L) its intra-chunk outputs v_{(n-1)S+1} ..
    v_{nS-1} are never read again (only the summary c_n = v_{nS} is); the last
    chunk's outputs stay for the final aggregator (Eq. 11).
    """
    if not is_chunk_end(l, chunk) or l >= num_sublayers:
        return ()
    return tuple(range(l - chunk + 1, l))
