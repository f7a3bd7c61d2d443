from services.licensing.app import wire
from shared.service import serve

serve("licensing", wire, title="xo-reseller licensing")
