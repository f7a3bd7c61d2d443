from services.console.app import wire
from shared.runtime.service import serve

serve("console", wire, title="xo-reseller operations console", role="operations")
