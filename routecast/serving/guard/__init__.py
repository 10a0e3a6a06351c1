"""What stands between the network and the router: authentication, limits, the strict JSON body
parser, the ASGI gate and the uvicorn protocol with header deadlines (see docs of each module)."""
