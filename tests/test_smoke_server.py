import httpx2 as httpx

from support.servers import Server


def test_served_by_uvicorn_creates_and_reads_a_job(server: Server) -> None:
    body = {
        "inputs": ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
        "profile": "2876db3d-ed16-4cf2-af82-98a383009e3c",
        "video": "62dcb602-e95b-483c-badf-9497914717a5",
    }
    created = httpx.post(server.url + "/encoding/jobs", json=body)
    assert created.status_code == 201
    # `url` resolves on the server that gave it out.
    fetched = httpx.get(created.json()["url"])
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
