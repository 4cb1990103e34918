"""Process settings for speed: on by default where they are safe, never over the user's own choice."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import paddlemix_eva\nfrom paddlemix_eva import get_model, runtime\n"
         "get_model('eva02_Ti_pt_in21k_ft_in1k_p14', layers=1)\nprint('malloc', runtime.allocator_tuned())\n"
         "print('threads', runtime.current_cpu_threads())")


def _probe(**env) -> subprocess.CompletedProcess:
    cleared = ("OMP_NUM_THREADS", "FLAGS_paddle_num_threads", "PADDLEMIX_EVA_CPU_THREADS", "PADDLEMIX_EVA_TUNE_MALLOC",
               "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    environ = {k: v for k, v in os.environ.items() if k not in cleared}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**environ, **env})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _threads_after_building_a_model(**env) -> int:
    return int(_probe(**env).stdout.split("threads")[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
@pytest.mark.parametrize("env, tuned", [({}, True), ({"PADDLEMIX_EVA_TUNE_MALLOC": "0"}, False),
                                        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, False)])
def test_allocator_tuned_by_default_unless_declined_or_tuned_by_the_user(env, tuned):
    result = _probe(**env)
    assert f"malloc {tuned}" in result.stdout
    assert ("glibc malloc: freed tensor buffers stay in the heap" in result.stderr) is tuned


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 'all cores' from Paddle's default 1")
def test_a_model_built_without_settings_uses_every_core():
    assert _threads_after_building_a_model() == os.cpu_count()


@pytest.mark.parametrize("env, expected", [({"OMP_NUM_THREADS": "1"}, 1), ({"PADDLEMIX_EVA_CPU_THREADS": "1"}, 1),
                                           ({"PADDLEMIX_EVA_CPU_THREADS": "0"}, 1),
                                           ({"FLAGS_paddle_num_threads": "1"}, 1)])
def test_the_users_thread_choice_is_kept(env, expected):
    assert _threads_after_building_a_model(**env) == expected
