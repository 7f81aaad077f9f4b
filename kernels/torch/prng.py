# The sfc32 PRNG seeded through splitmix32 of the TypeScript executors (kernels/model.ts Prng), bit-identical, with
# its Box-Muller normals: the exact initialisation and the synthetic token source draw from it.
from __future__ import annotations

import math

_M32 = 0xFFFFFFFF


class Prng:
    """sfc32 seeded through splitmix32, bit-identical to `Prng` of kernels/model.ts; `normal()` is Box-Muller."""

    __slots__ = ("a", "b", "c", "d", "spare")

    def __init__(self, *seeds: int) -> None:
        s = 0x9E3779B9

        def mix() -> int:
            nonlocal s
            s = (s + 0x9E3779B9) & _M32
            z = s
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & _M32
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & _M32
            return (z ^ (z >> 16)) & _M32

        for x in seeds:
            lo = x % 0x100000000
            hi = (x // 0x100000000) % 0x100000000
            s = (s ^ (((lo ^ hi) * 0x27D4EB2F) & _M32)) & _M32
            mix()
        self.a = mix()
        self.b = mix()
        self.c = mix()
        self.d = mix()
        self.spare: float | None = None
        for _ in range(12):
            self.next_u32()

    def next_u32(self) -> int:
        """Next uniform 32-bit unsigned integer."""
        a, b, c, d = self.a, self.b, self.c, self.d
        t = (a + b + d) & _M32
        self.d = (d + 1) & _M32
        self.a = b ^ (b >> 9)
        self.b = (c + (c << 3)) & _M32
        c = ((c << 21) & _M32) | (c >> 11)
        self.c = (c + t) & _M32
        return t

    def uniform(self) -> float:
        """Uniform in [0, 1) with 32 bits of resolution."""
        return self.next_u32() / 4294967296

    def below(self, n: int) -> int:
        """Uniform integer in [0, n) (`int(n)` of the TypeScript Prng)."""
        return math.floor(self.uniform() * n)

    def normal(self) -> float:
        """Standard normal sample."""
        if self.spare is not None:
            s = self.spare
            self.spare = None
            return s
        u1 = (self.next_u32() + 1) / 4294967297
        u2 = self.uniform()
        r = math.sqrt(-2 * math.log(u1))
        self.spare = r * math.sin(2 * math.pi * u2)
        return r * math.cos(2 * math.pi * u2)

    def normals(self, n: int, std: float) -> list[float]:
        """`n` samples of N(0, std²) in float64 (the hot loop of initialisation, inlined)."""
        out = [0.0] * n
        a, b, c, d = self.a, self.b, self.c, self.d
        log, sqrt, sin, cos, tau = math.log, math.sqrt, math.sin, math.cos, 2 * math.pi
        i = 0
        if self.spare is not None and n > 0:
            out[0] = self.spare * std
            self.spare = None
            i = 1
        while i < n:
            t1 = (a + b + d) & _M32
            d = (d + 1) & _M32
            a = b ^ (b >> 9)
            b = (c + (c << 3)) & _M32
            c = ((((c << 21) & _M32) | (c >> 11)) + t1) & _M32
            t2 = (a + b + d) & _M32
            d = (d + 1) & _M32
            a = b ^ (b >> 9)
            b = (c + (c << 3)) & _M32
            c = ((((c << 21) & _M32) | (c >> 11)) + t2) & _M32
            r = sqrt(-2 * log((t1 + 1) / 4294967297))
            u2 = t2 / 4294967296
            out[i] = r * cos(tau * u2) * std
            if i + 1 < n:
                out[i + 1] = r * sin(tau * u2) * std
            else:
                self.spare = r * sin(tau * u2)
            i += 2
        self.a, self.b, self.c, self.d = a, b, c, d
        return out

