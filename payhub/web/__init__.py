"""payhub's HTTP edge: one ASGI application (Starlette) served by uvicorn inside every `payhub serve`
worker, next to the gRPC server. This package owns the app factory (app.py), the middleware every
request passes (middleware.py) and the server that runs it (server.py); each bounded context keeps its
own routes in its own package (e.g. payhub/channel/http.py) and hands them over through its
component's `http_routes()`. Pages and their assets (the cashier, the operations dashboard) mount here
the same way: routes from their context, static files and templates served from this package.
"""
