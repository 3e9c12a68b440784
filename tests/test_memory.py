import ctypes.util

import pytest

from twagent import memory


@pytest.mark.skipif(not ctypes.util.find_library("c"), reason="needs a C library")
def test_memory_glibc_takes_the_allocator_settings():
    assert memory.tune_allocator() is True
    memory.release()


def test_memory_without_libc_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_libc", False)
    assert memory.tune_allocator() is False
    memory.release()
