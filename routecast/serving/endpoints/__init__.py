"""The server's endpoints: one small function per endpoint, grouped in APIRouters that
:func:`routecast.serving.app.create_app` includes. Each reads ``request.app.state.server``
(:class:`routecast.serving.state.ServerState`)."""
