"""Cache invalidation rules: each change through the mount touches exactly what it affects."""

from __future__ import annotations

import time

import pytest

from pysshfs.cache import CacheConfig, MetadataCache, _Slot, parent_of
from pysshfs.sftp.codec import Attrs


def make(**kw: object) -> MetadataCache:
    return MetadataCache(CacheConfig(**kw))  # type: ignore[arg-type]


def test_parent_of() -> None:
    assert parent_of("/") == "/"
    assert parent_of("/a") == "/"
    assert parent_of("/a/b/c") == "/a/b"


def test_listing_seeds_attributes() -> None:
    c = make()
    names = c.learned_listing("/d", [("x", Attrs(size=1, mode=0o100644)),
                                     ("y", Attrs(size=2, mode=0o40755))])
    assert names == [("x", 0o100644), ("y", 0o40755)]
    assert c.attrs("/d/x").size == 1
    assert c.attrs("/d/y").size == 2
    root_names = c.learned_listing("/", [("top", Attrs(size=3))])
    assert root_names == [("top", 0)]
    assert c.attrs("/top").size == 3


def test_created_adds_to_parent_listing_and_clears_negative() -> None:
    c = make()
    c.learned_listing("/d", [])
    c.learned_missing("/d/new")
    assert c.is_missing("/d/new")
    c.created("/d/new", 0o100644)
    assert not c.is_missing("/d/new")
    assert c.listing("/d") == [("new", 0o100644)]
    assert not c.absent("/d/new")


def test_a_new_directory_is_known_empty() -> None:
    c = make()
    c.created("/d", 0o40755)
    assert c.listing("/d") == []
    assert c.absent("/d/anything")
    c.created("/d/f", 0o100600)
    assert not c.absent("/d/f")
    assert c.absent("/d/g")


def test_absent_only_from_a_recent_listing() -> None:
    c = MetadataCache(CacheConfig(negative_ttl=0.0))
    c.learned_listing("/d", [("x", Attrs(mode=0o100644))])
    assert not c.absent("/d/y")  # too old to trust for a negative answer
    c = make()
    c.learned_listing("/d", [("x", Attrs(mode=0o100644))])
    assert c.absent("/d/y")
    assert not c.absent("/d/x")
    assert not c.absent("/e/y")  # no listing of /e: unknown


def test_removed_marks_missing_and_edits_parent_listing() -> None:
    c = make()
    c.learned_listing("/d", [("f", Attrs(size=1)), ("g", Attrs(size=2))])
    c.removed("/d/f")
    assert c.attrs("/d/f") is None
    assert c.is_missing("/d/f")
    assert c.listing("/d") == [("g", 0)]


def test_unsure_forgets_the_path_and_its_parent_listing() -> None:
    c = make()
    c.learned_listing("/d", [("f", Attrs(size=1))])
    c.learned_missing("/d/g")
    c.unsure("/d/g")
    assert not c.is_missing("/d/g")
    assert c.listing("/d") is None
    assert not c.absent("/d/g")


def test_renamed_directory_forgets_everything_below_both_sides() -> None:
    c = make()
    c.learned_listing("/a", [("f", Attrs(size=1))])
    c.learned_attrs("/a", Attrs(mode=0o40755))
    c.learned_attrs("/b/old", Attrs(size=9))
    c.learned_attrs("/ab", Attrs(size=5))  # shares a prefix, not a child: must survive
    c.renamed("/a", "/b")
    assert c.attrs("/a/f") is None
    assert c.attrs("/a") is None
    assert c.attrs("/b/old") is None
    assert c.is_missing("/a")
    assert c.attrs("/ab").size == 5


def test_renamed_file_does_not_walk_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A known regular file has nothing below it (git renames its index into place at
    the end of each status: the walk through every cached path cost ~30 ms); a path of
    unknown kind still has its subtree dropped."""
    c = make()
    walked: list[str] = []
    monkeypatch.setattr(_Slot, "drop_under", lambda self, prefix: walked.append(prefix))
    c.learned_attrs("/d/index.lock", Attrs(mode=0o100644, size=3))
    c.learned_attrs("/d/index", Attrs(mode=0o100644, size=2))
    c.renamed("/d/index.lock", "/d/index")
    assert walked == []
    assert c.attrs("/d/index") is None and c.is_missing("/d/index.lock")
    c.learned_listing("/e", [])
    c.created("/e/made", 0o100644)  # its kind known from the listing alone
    c.renamed("/e/made", "/e/moved")
    assert walked == []
    c.renamed("/d/unknown", "/d/other")
    assert walked and set(walked) == {"/d/unknown", "/d/other"}


def test_changed_keeps_listing() -> None:
    c = make()
    c.learned_listing("/", [("f", Attrs(size=1))])
    c.changed("/f")
    assert c.attrs("/f") is None
    assert c.listing("/") == [("f", 0)]


def test_cache_no_stores_nothing() -> None:
    c = make(enabled=False)
    c.learned_attrs("/f", Attrs(size=1))
    c.learned_missing("/g")
    c.learned_listing("/", [("f", Attrs(size=1))])
    assert c.attrs("/f") is None
    assert not c.is_missing("/g")
    assert c.listing("/") is None


def test_dir_cache_off_keeps_attributes() -> None:
    c = make(dir_enabled=False)
    c.learned_listing("/", [("f", Attrs(size=1))])
    assert c.listing("/") is None
    assert c.attrs("/f").size == 1


def test_entries_expire() -> None:
    c = make(stat_ttl=0.05, dir_ttl=0.05, negative_ttl=0.05)
    c.learned_attrs("/f", Attrs(size=1))
    c.learned_missing("/g")
    deadline = time.monotonic() + 5
    while (c.attrs("/f") is not None or c.is_missing("/g")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.attrs("/f") is None
    assert not c.is_missing("/g")


def test_size_bound() -> None:
    c = make(max_size=10)
    for i in range(100):
        c.learned_attrs(f"/f{i}", Attrs(size=i))
    kept = sum(1 for i in range(100) if c.attrs(f"/f{i}") is not None)
    assert kept <= 10


def test_attrs_before_change_survive_a_change_but_not_a_new_file() -> None:
    c = make()
    c.learned_attrs("/f", Attrs(size=1, atime=7, mtime=8))
    c.changed("/f")
    assert c.attrs("/f") is None
    before = c.attrs_before_change("/f")
    assert before is not None and before.atime == 7
    c.removed("/f")
    assert c.attrs_before_change("/f") is None
    c.learned_attrs("/g", Attrs(atime=1))
    c.changed("/g")
    c.renamed("/h", "/g")
    assert c.attrs_before_change("/g") is None


def test_config_from_options_splits_each_ttl_with_the_kernel() -> None:
    from pysshfs.cache import kernel_timeouts
    from pysshfs.mountspec import MountOptions

    opts = MountOptions(cache_timeout=4.0)
    config = CacheConfig.from_options(opts)
    kernel = kernel_timeouts(opts)
    assert kernel == {"entry_timeout": 2.0, "attr_timeout": 2.0, "negative_timeout": 2.0}
    assert (config.stat_ttl, config.negative_ttl, config.dir_ttl) == (2.0, 2.0, 4.0)
    assert config.kernel_entry_ttl == 2.0
    off = CacheConfig.from_options(MountOptions(cache=False))
    assert not off.enabled and off.kernel_entry_ttl == 0.0
    assert kernel_timeouts(MountOptions(cache=False))["attr_timeout"] == 0.0


def test_entry_changes_drop_the_parents_attributes() -> None:
    """A directory's mtime/ctime move when an entry is added, removed or renamed."""
    for change in ("created", "removed", "unsure"):
        c = make()
        c.learned_attrs("/d", Attrs(mode=0o40755, mtime=1))
        c.learned_attrs("/other", Attrs(mode=0o40755, mtime=1))
        if change == "created":
            c.created("/d/x", 0o100644)
        else:
            getattr(c, change)("/d/x")
        assert c.attrs("/d") is None, change
        assert c.attrs("/other") is not None, change
    c = make()
    for d in ("/a", "/b", "/c"):
        c.learned_attrs(d, Attrs(mode=0o40755, mtime=1))
    c.renamed("/a/f", "/b/f")
    assert c.attrs("/a") is None and c.attrs("/b") is None
    assert c.attrs("/c") is not None


def test_a_listing_in_flight_does_not_bring_back_a_changed_directorys_attributes() -> None:
    """The listing of / asked for before an entry of /d changed carries /d's old mtime:
    stored after the change, a stat of /d would see it until the TTL ends."""
    for change in ("created", "removed", "unsure", "changed"):
        c = make()
        epoch = c.epoch("/")  # the listing of / goes out
        if change == "created":
            c.created("/d/x", 0o100644)
        else:
            getattr(c, change)("/d/x" if change != "changed" else "/d")
        c.learned_listing("/", [("d", Attrs(mode=0o40755, mtime=1))], epoch=epoch)
        assert c.attrs("/d") is None, change


def test_a_listing_in_flight_does_not_shadow_attributes_read_after_it_was_asked() -> None:
    """A listing of /d goes out; an open's close-to-open check then reads f grown to 14
    bytes (the kernel is told 14); the listing comes back saying 5. A stat must not go
    back to 5: the listing answers for the other entries, f keeps what was read later."""
    c, clock = clocked()
    asked = clock.now  # the listing of /d goes out
    clock.now += 0.01
    c.learned_attrs("/d/f", Attrs(size=14, mode=0o100644))  # the open's LSTAT
    clock.now += 0.01
    c.learned_listing("/d", [("f", Attrs(size=5, mode=0o100644)),
                             ("g", Attrs(size=7, mode=0o100644))], read_at=asked)
    assert c.attrs("/d/f").size == 14
    assert c.attrs("/d/g").size == 7  # the rest of the listing is used as it was
    assert c.listing("/d") == [("f", 0o100644), ("g", 0o100644)]
    # a listing asked for after that read is the newer one: it answers
    asked = clock.now
    clock.now += 0.01
    c.learned_listing("/d", [("f", Attrs(size=20, mode=0o100644))], read_at=asked)
    assert c.attrs("/d/f").size == 20


def test_forget_drops_a_subtree_and_names_what_it_held() -> None:
    c = make()
    c.learned_listing("/d", [("x", Attrs(size=1, mode=0o100644))])
    c.learned_attrs("/d", Attrs(mode=0o40755))
    c.learned_attrs("/dx", Attrs(mode=0o100644))
    c.learned_missing("/d/gone")
    assert sorted(c.forget("/d")) == ["/d", "/d/x"]
    assert c.attrs("/d/x") is None and c.listing("/d") is None
    assert not c.is_missing("/d/gone")
    assert c.attrs("/dx") is not None  # a sibling whose name starts alike stays
    assert c.forget("/") == ["/dx"]
    assert c.attrs("/dx") is None


def test_counters_count_hits_and_misses() -> None:
    c = make()
    assert c.attrs("/f") is None
    c.learned_attrs("/f", Attrs(size=1))
    assert c.attrs("/f") is not None
    c.learned_missing("/g")
    assert c.is_missing("/g")
    assert c.listing("/") is None
    counts = c.counters.snapshot()
    assert counts["attr_hits"] == 1 and counts["attr_misses"] == 1
    assert counts["negative_hits"] == 1 and counts["listing_misses"] == 1


# --- a listing keeps its entries' attributes -------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def clocked(**kw: object) -> tuple[MetadataCache, Clock]:
    clock = Clock()
    return MetadataCache(CacheConfig(**kw), clock=clock), clock  # type: ignore[arg-type]


def test_listing_attributes_take_no_item_per_entry() -> None:
    """30,000 entries: one listing item, no per-path attribute item (what made ls -l of a
    big directory cost more CPU in the cache than anywhere else)."""
    c = make(max_size=100)
    c.learned_listing("/big", [(f"f{i}", Attrs(size=i, mode=0o100644)) for i in range(30000)])
    assert c.attrs("/big/f29999").size == 29999  # past max_size: still known
    assert c._attrs.cache is not None and len(c._attrs.cache) == 0


def test_the_last_learned_of_own_and_listed_attributes_wins() -> None:
    c, clock = clocked()
    c.learned_attrs("/d/f", Attrs(size=1))
    clock.now += 1
    c.learned_listing("/d", [("f", Attrs(size=2))], read_at=clock.now)
    assert c.attrs("/d/f").size == 2  # listed after the LSTAT
    clock.now += 1
    c.learned_attrs("/d/f", Attrs(size=3))
    assert c.attrs("/d/f").size == 3  # LSTAT after the listing


def test_listed_attributes_expire_with_the_stat_ttl() -> None:
    c, clock = clocked(stat_ttl=5.0, dir_ttl=20.0)
    c.learned_listing("/d", [("f", Attrs(size=2))], read_at=clock.now)
    clock.now += 6
    assert c.attrs("/d/f") is None
    assert c.listing("/d") == [("f", 0)]  # the names live out the directory TTL


def test_a_change_drops_the_listed_attributes_but_keeps_them_as_before() -> None:
    c = make()
    c.learned_listing("/d", [("f", Attrs(size=2, atime=7)), ("g", Attrs(size=3))])
    c.changed("/d/f")
    assert c.attrs("/d/f") is None
    assert c.attrs_before_change("/d/f").atime == 7
    assert c.attrs("/d/g").size == 3


def test_missing_after_a_listing_and_listed_after_missing() -> None:
    c, clock = clocked()
    c.learned_listing("/d", [("f", Attrs(size=2))], read_at=clock.now)
    clock.now += 1
    c.learned_missing("/d/f")
    assert c.attrs("/d/f") is None and c.is_missing("/d/f")
    clock.now += 1
    c.learned_listing("/d", [("f", Attrs(size=4))], read_at=clock.now)
    assert not c.is_missing("/d/f") and c.attrs("/d/f").size == 4


def test_edits_keep_the_listing_weight_exact() -> None:
    """Creating and removing names edits the listing in place; its weight stays what a
    fresh listing of the same entries weighs (the byte budget holds)."""
    from pysshfs.cache import _Listing

    c = make()
    c.learned_listing("/d", [(f"f{i}", Attrs(size=i, mode=0o100644)) for i in range(2000)])
    c.created("/d/new", 0o100644)
    c.removed("/d/f3")
    c.changed("/d/f4")
    held = c._dirs.get("/d")
    assert held is not None
    fresh = _Listing(0.0, dict(held.modes), dict(held.attrs))
    assert held.weight == fresh.weight
    assert "new" in held.modes and "f3" not in held.modes
    assert "f4" not in held.attrs and "new" not in held.attrs
    # heavier than the floor every item weighs (see _Slot), so its own weight counts
    assert c._dirs.cache is not None and c._dirs.cache.currsize == held.weight


def test_forget_names_the_paths_a_listing_held() -> None:
    c = make()
    c.learned_listing("/d", [("f", Attrs(size=1)), ("g", Attrs(size=2))])
    c.learned_attrs("/d", Attrs(mode=0o40755))
    assert sorted(c.forget("/d")) == ["/d", "/d/f", "/d/g"]
    assert c.attrs("/d/f") is None


def test_listing_entries_carry_the_attributes_still_held() -> None:
    c, clock = clocked(stat_ttl=5.0, dir_ttl=20.0)
    a, b = Attrs(size=1, mode=0o100644), Attrs(size=2, mode=0o100644)
    c.learned_listing("/d", [("a", a), ("b", b)], read_at=clock.now)
    assert c.listing_entries("/d") == [("a", 0o100644, a), ("b", 0o100644, b)]
    c.changed("/d/a")
    assert c.listing_entries("/d") == [("a", 0o100644, None), ("b", 0o100644, b)]
    clock.now += 6  # past the stat TTL, within the directory TTL: names only
    assert c.listing_entries("/d") == [("a", 0o100644, None), ("b", 0o100644, None)]
    clock.now += 20
    assert c.listing_entries("/d") is None


@pytest.mark.parametrize("fast", [True, False])
def test_slot_get_expires_and_keeps_recently_used(fast: bool) -> None:
    """_Slot.get answers as `in` then [] would (expired: None), read from TTLCache's
    dicts or not, and a hit counts as a use: the least recently used goes when full."""
    now = [100.0]
    slot: _Slot[str] = _Slot(True, 10.0, 2, clock=lambda: now[0])
    if not fast:
        slot._links = None
    assert (slot._links is not None) is fast
    slot.put("a", "A")
    now[0] += 5
    slot.put("b", "B")
    assert slot.get("a") == "A"  # used: "b" is now the least recently used
    slot.put("c", "C")
    assert slot.get("b") is None and slot.get("a") == "A" and slot.get("c") == "C"
    now[0] += 5  # "a" reached its TTL
    assert slot.get("a") is None and slot.get("c") == "C"
    assert slot.get("nothing") is None


@pytest.mark.parametrize("fast", [True, False])
def test_slot_drop_forgets_held_and_ignores_unknown(fast: bool) -> None:
    slot: _Slot[str] = _Slot(True, 10.0, 4)
    if not fast:
        slot._links = None
    slot.put("a", "A")
    slot.put("b", "B")
    slot.drop("nothing")
    slot.drop("a")
    assert slot.get("a") is None and slot.get("b") == "B"
    assert slot.cache is not None and len(slot.cache) == 1
