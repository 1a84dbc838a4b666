"""Time-ordered UUIDs (version 7, RFC 9562) for alert and run ids.

New rows land at the right edge of the primary-key index instead of at random
pages, which keeps inserts cheap as the tables grow; the random part (74 bits
from the OS) keeps ids unguessable enough for a record id (they are not secrets).
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 random bits
    return uuid.UUID(int=value)
