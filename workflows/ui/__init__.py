"""``kaizen ui``: a web dashboard of one workspace (Starlette + Jinja, no build step, no CDN).

``data`` reads the store and the run directories into JSON-able dicts (every page's ``/api/…`` twin),
``charts`` draws the few figures as inline SVG, ``app`` serves both. The room imports only
``kaizen.tools`` and ``kaizen.workflows.report``: approving a run is injected by the CLI
(``workflows/cli/cmd_ui.py``), which passes the very function ``kaizen runs approve`` calls.
"""
