"""How much memory a cohort of members may plan to fill (members.free_bytes)."""
from __future__ import annotations


def test_free_memory_keeps_to_a_containers_limit(tmp_path):
    """A cohort's size comes from free memory; in a container MemAvailable reads the host's, so the cgroup limit
    (v2 and v1) less what is in use, less the reclaimable inactive file cache, bounds it."""
    from transferlab import members

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("8589934592\n")  # 8 GiB
    (v2 / "memory.current").write_text(str(6 * 2**30))
    (v2 / "memory.stat").write_text("anon 100\ninactive_file 1073741824\nactive_file 5\n")  # 1 GiB reclaimable
    assert members.cgroup_free([str(v2)]) == 3 * 2**30
    inner = v2 / "job"  # a nested cgroup with a looser limit of its own: the parent's tighter one counts
    inner.mkdir()
    (inner / "memory.max").write_text(str(16 * 2**30))
    (inner / "memory.current").write_text(str(6 * 2**30))
    assert members.cgroup_free([str(inner), str(v2)]) == 3 * 2**30
    (v2 / "memory.max").write_text("max\n")
    assert members.cgroup_free([str(v2)]) is None  # no limit: the host's figure stands
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(4 * 2**30))
    (v1 / "memory.usage_in_bytes").write_text(str(5 * 2**30))  # over the limit: nothing free, not negative
    assert members.cgroup_free([str(v1)]) == 0
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "no limit"
    assert members.cgroup_free([str(v1)]) is None
    assert members.cgroup_free([str(tmp_path / "none")]) is None
    assert isinstance(members._cgroup_folders(), list)  # this process's own, read from /proc/self/cgroup
    assert 0 < members.free_bytes("cpu")
