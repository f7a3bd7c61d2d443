from services.credits.app import wire
from shared.service import serve

serve("credits", wire, title="xo-reseller credits")
