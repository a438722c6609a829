"""A service whose callers wait for each other, across servers in one process."""

import asyncio

from smanager import CommandError, SService


class Meeting(SService):
    """Holds each caller until every expected caller has arrived"""

    async def cmd_meet(self):
        """Waits until all the test's callers are here at once; how many came"""
        room = self.options["room"]  # shared by every server of the test
        loop = asyncio.get_running_loop()
        room.setdefault("closes_at", loop.time() + room.get("patience", 5.0))
        room["arrived"] += 1
        room["inside"] += 1
        room["peak"] = max(room["peak"], room["inside"])
        if room["arrived"] >= room["expected"]:
            room["all_here"].set()
        try:
            # Callers asked one after another would never all be here: the room
            # closes a while after the first arrives, so that fails fast.
            await asyncio.wait_for(room["all_here"].wait(), room["closes_at"] - loop.time())
        except TimeoutError:
            raise CommandError(f"only {room['arrived']} of {room['expected']} came") from None
        finally:
            room["inside"] -= 1
        return room["arrived"]

    async def cmd_pause(self, seconds: float):
        """Stays SECONDS, counting how many callers are inside at once"""
        room = self.options["room"]
        room["inside"] += 1
        room["peak"] = max(room["peak"], room["inside"])
        try:
            await asyncio.sleep(seconds)
        finally:
            room["inside"] -= 1
        return seconds
