from services.quotes.app import wire
from shared.service import serve

serve("quotes", wire, title="xo-reseller quotes")
