"""Time predictions through a served page's HTTP API, from a process of its own.

    python -m deepscape.api_timing URL IMAGE.png [REQUESTS] [ENDPOINT]   # prints JSON seconds

A client in the server's own process would share its interpreter lock and time itself as much
as the server, so labs and benchmarks run this module as a separate process; it imports only
httpx, to start quickly.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def api_latencies(
    url: str, png: bytes, *, requests: int = 200, endpoint: str = "predict"
) -> list[float]:
    """Seconds per prediction as any client makes it: upload the file, call the endpoint, read
    the result (one kept-alive connection, as a browser keeps)."""
    import httpx

    seconds = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(requests):
            started = time.perf_counter()
            uploaded = http.post("/gradio_api/upload", files={"files": ("input.png", png)})
            file = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
            call = http.post(f"/gradio_api/call/{endpoint}", json={"data": [file]})
            result = http.get(f"/gradio_api/call/{endpoint}/{call.json()['event_id']}").text
            seconds.append(time.perf_counter() - started)
            if "event: complete" not in result:
                raise RuntimeError(f"the page answered with an error: {result[-300:]}")
    return seconds


def timed_from_another_process(
    url: str, png: bytes, *, requests: int, folder: Path, endpoint: str = "predict"
) -> list[float]:
    """`api_latencies` run by a fresh Python process (the PNG goes through `folder`)."""
    import subprocess

    image = folder / "api_timing_input.png"
    image.write_bytes(png)
    command = [
        sys.executable,
        "-m",
        "deepscape.api_timing",
        url,
        str(image),
        str(requests),
        endpoint,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    image.unlink()
    if done.returncode:
        raise RuntimeError(f"timing the API failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    url, image, *rest = sys.argv[1:]
    count = int(rest[0]) if rest else 200
    endpoint = rest[1] if len(rest) > 1 else "predict"
    print(
        json.dumps(api_latencies(url, Path(image).read_bytes(), requests=count, endpoint=endpoint))
    )
