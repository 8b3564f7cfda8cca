"""Reading video files: what a downloaded video holds, and small pictures of it.

Apart from the API (``client``) and from Prefect (``video``): these functions take a local file
and return facts and JPEG bytes, so the archive can check a video before it reports it archived.
"""
