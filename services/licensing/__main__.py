from services.licensing.app import wire
from shared.runtime.service import serve

serve("licensing", wire, title="xo-reseller licensing")
